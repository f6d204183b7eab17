from deploymate.cli.main import main

main()
