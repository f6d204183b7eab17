// Shows the number of unread notifications next to the "Notifications" link.
"use strict";
fetch("/api/notifications/unread-count", { credentials: "same-origin" })
  .then((res) => (res.ok ? res.json() : null))
  .then((data) => {
    const badge = document.querySelector("[data-unread-badge]");
    if (badge && data && data.unread) {
      badge.textContent = String(data.unread);
      badge.hidden = false;
    }
  })
  .catch(() => {});
