// Live parts of a deployment's page: the job log and following the container log (SSE).
// The page works without this file; it only replaces the server-rendered snapshots with streams.
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

  function followJob(section) {
    var id = section.getAttribute("data-job-id");
    var pre = section.querySelector("[data-job-log]");
    var state = section.querySelector("[data-job-state]");
    var hint = section.querySelector("[data-job-hint]");
    if (!id || !pre || !window.EventSource) return;
    if (hint) hint.textContent = "Following live.";
    var started = false;
    var source = new EventSource("/api/jobs/" + encodeURIComponent(id) + "/events");
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
      if (hint) hint.textContent = "Finished; refreshing the page…";
      // Status, releases, health and logs changed with the job: show them from the server.
      window.setTimeout(function () {
        window.location.reload();
      }, 800);
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

  document.addEventListener("DOMContentLoaded", function () {
    var job = document.querySelector("[data-job-id][data-job-live='true']");
    if (job) followJob(job);
    var follow = document.querySelector("[data-follow]");
    if (follow) setupFollow(follow);
  });
})();
