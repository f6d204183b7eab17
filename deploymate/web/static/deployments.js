// Live parts of a deployment's page (SSE): the job log, following the container log, and the
// page itself: when the deployment's state changes (a job starts or ends, the status moves), the
// sections marked data-live are fetched again and swapped in place, without a reload. The page
// works without this file; it only replaces the server-rendered snapshots with streams.
(function () {
  "use strict";

  var MAX_LINES = 2000;

  function appendLine(pre, text) {
    var atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
    pre.appendChild(document.createTextNode(text + "\n"));
    while (pre.childNodes.length > MAX_LINES) {
      pre.removeChild(pre.firstChild);
    }
    if (atBottom) {
      pre.scrollTop = pre.scrollHeight;
    }
  }

  function parse(event) {
    try {
      return JSON.parse(event.data);
    } catch (e) {
      return {};
    }
  }

  function jobLine(data) {
    var at = typeof data.at === "string" ? data.at.slice(11, 19) : "";
    var level = data.level && data.level !== "info" ? data.level.toUpperCase() + ": " : "";
    return at + " " + level + (data.message || "");
  }

  function stateClass(status) {
    if (status === "succeeded") return "status-ok";
    if (status === "failed" || status === "interrupted") return "status-bad";
    return "status-warn";
  }

  var jobSource = null;
  var following = false;
  var shownJob = null;

  function followJob(section) {
    var id = section.getAttribute("data-job-id");
    if (jobSource) jobSource.close();
    var pre = section.querySelector("[data-job-log]");
    var state = section.querySelector("[data-job-state]");
    var hint = section.querySelector("[data-job-hint]");
    if (!id || !pre || !window.EventSource) return;
    if (hint) hint.textContent = "Following live.";
    var started = false;
    var source = new EventSource("/api/jobs/" + encodeURIComponent(id) + "/events");
    jobSource = source;
    source.addEventListener("log", function (event) {
      if (!started) {
        pre.textContent = ""; // the stream replays the whole log from the start
        started = true;
      }
      appendLine(pre, jobLine(parse(event)));
      if (state && state.textContent === "queued") state.textContent = "running";
    });
    source.addEventListener("end", function (event) {
      source.close();
      var data = parse(event);
      if (state) {
        state.textContent = data.status || "finished";
        state.className = "pill " + stateClass(data.status);
      }
      if (hint) hint.textContent = "Finished.";
      // Status, releases, health and actions changed with the job: show them from the server.
      refresh(id);
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED && hint) {
        hint.textContent = "Live updates stopped; reload the page to see the latest state.";
      }
    };
  }

  function setupFollow(button) {
    var pre = document.querySelector("[data-container-log]");
    var note = document.querySelector("[data-log-note]");
    if (!pre || !window.EventSource) return;
    var url = button.getAttribute("data-url");
    var snapshot = pre.textContent;
    var source = null;

    function stop(message) {
      if (source) source.close();
      source = null;
      following = false;
      button.textContent = "Follow";
      button.setAttribute("aria-pressed", "false");
      if (note && message) note.textContent = message;
      if (!pre.textContent) pre.textContent = "(no output)\n";
    }

    button.hidden = false;
    button.addEventListener("click", function () {
      if (source) {
        stop("Stopped following.");
        return;
      }
      pre.textContent = "";
      following = true;
      button.textContent = "Stop following";
      button.setAttribute("aria-pressed", "true");
      if (note) note.textContent = "Following the container log live.";
      source = new EventSource(url);
      source.addEventListener("log", function (event) {
        appendLine(pre, parse(event).line || "");
      });
      source.addEventListener("end", function () {
        stop("The container's log ended (it stopped or was replaced).");
      });
      source.onerror = function () {
        if (source && source.readyState === EventSource.CLOSED) {
          if (!pre.textContent) pre.textContent = snapshot;
          stop("Following failed; the target may be unreachable.");
        }
      };
    });
  }

  var refreshing = false;
  var again = false;

  // Fetch the page again and swap every data-live section; then follow the job it shows if
  // that one is still running. `jobId` keeps showing the job that just ended.
  function refresh(jobId) {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    var url = window.location.pathname + (jobId ? "?job=" + encodeURIComponent(jobId) : "");
    fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (res) {
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (old) {
          var name = old.getAttribute("data-live");
          if (name === "logs" && following) return; // a followed log keeps streaming
          var next = fresh.querySelector('[data-live="' + name + '"]');
          if (next) old.replaceWith(document.importNode(next, true));
        });
        document.dispatchEvent(new CustomEvent("dm:content"));
        var follow = document.querySelector("[data-follow][hidden]");
        if (follow && !following) setupFollow(follow);
        var job = document.querySelector("[data-job-id][data-job-live='true']");
        var id = job ? job.getAttribute("data-job-id") : null;
        if (job && id !== shownJob) {
          shownJob = id;
          followJob(job);
        }
      })
      .catch(function () {
        /* the next state change tries again */
      })
      .then(function () {
        refreshing = false;
        if (again) {
          again = false;
          refresh(currentJob());
        }
      });
  }

  function currentJob() {
    var job = document.querySelector("[data-job-id]");
    return job ? job.getAttribute("data-job-id") : null;
  }

  function watch(head) {
    var url = head.getAttribute("data-watch");
    var known = head.getAttribute("data-watch-state") || "";
    if (!url || !window.EventSource || !window.fetch || !window.DOMParser) return;
    var source = new EventSource(url);
    source.addEventListener("state", function (event) {
      var state = parse(event);
      var text = JSON.stringify(state);
      if (known && text === JSON.stringify(JSON.parse(known))) return;
      known = text;
      refresh(state.job_id || currentJob()); // the latest job: the one worth showing
    });
  }

  // A link to #settings (from an error that says what to change) opens the settings form.
  function openSettings() {
    var details = document.querySelector("details[data-settings]");
    if (details) details.open = true;
  }
  document.addEventListener("click", function (event) {
    var link = event.target instanceof Element ? event.target.closest("[data-open-settings]") : null;
    if (link) openSettings();
  });

  document.addEventListener("DOMContentLoaded", function () {
    if (window.location.hash === "#settings") openSettings();
    var job = document.querySelector("[data-job-id][data-job-live='true']");
    if (job) {
      shownJob = job.getAttribute("data-job-id");
      followJob(job);
    }
    var head = document.querySelector("[data-watch]");
    if (head) watch(head);
    var follow = document.querySelector("[data-follow]");
    if (follow) setupFollow(follow);
  });
})();
