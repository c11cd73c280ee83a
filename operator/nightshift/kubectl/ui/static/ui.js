// kubectl nightshift ui: live updates, confirmed actions and the browser's time zone.
// No framework and no build step: the server renders every page; this script only swaps the
// page's content part when the server says something changed, and posts the actions.
"use strict";

(function () {
  const content = document.getElementById("content");
  const live = document.getElementById("live");
  const notice = document.getElementById("notice");
  const problem = document.getElementById("problem");
  const dialog = document.getElementById("confirm");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const ZONE_COOKIE = "nightshift-tz";

  // The browser's zone goes to the server in a cookie, so it renders times in it. On the first
  // visit the page was rendered before the server knew it: fetch the content again.
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  document.cookie = ZONE_COOKIE + "=" + encodeURIComponent(zone) + "; Path=/; SameSite=Strict";

  function show(element, text) {
    element.textContent = text;
    element.hidden = !text;
  }

  let refreshing = null;
  let again = false;

  // Fetch this page's content part and swap it in; one refresh at a time, the last one wins.
  async function refresh() {
    if (refreshing) {
      again = true;
      return refreshing;
    }
    refreshing = (async () => {
      try {
        const response = await fetch(location.href, {
          headers: { "X-Nightshift-Part": "content" },
          credentials: "same-origin",
          cache: "no-store",
        });
        const html = await response.text();
        if (dialog.open) {
          again = true; // do not move the page under an open confirmation
        } else {
          content.innerHTML = html;
          document.dispatchEvent(new CustomEvent("nightshift:refreshed"));
        }
      } catch (error) {
        show(problem, "Could not refresh the page: " + error);
      }
    })();
    await refreshing;
    refreshing = null;
    if (again) {
      again = false;
      setTimeout(refresh, 200);
    }
  }

  // body[data-zone-ready] says the content shows times in the browser's zone.
  if (document.body.dataset.browserZone !== zone) {
    refresh().then(() => {
      document.body.dataset.browserZone = zone;
      document.body.dataset.zoneReady = "true";
    });
  } else {
    document.body.dataset.zoneReady = "true";
  }

  // Live updates: a server-sent event stream fed by watches on the API server.
  let timer = null;
  function connect() {
    const url = document.body.dataset.events;
    if (!url) return;
    const source = new EventSource(url);
    source.addEventListener("open", () => {
      live.dataset.state = "live";
      live.textContent = "live";
    });
    source.addEventListener("change", () => {
      clearTimeout(timer);
      timer = setTimeout(refresh, 250); // a burst of changes becomes one refresh
    });
    source.addEventListener("problem", (event) => {
      // The watch was refused (a 403, say): say so and stop, rather than retry forever.
      source.close();
      live.dataset.state = "stopped";
      live.textContent = "not live";
      show(problem, "Live updates stopped: " + event.data);
    });
    source.addEventListener("error", () => {
      if (source.readyState !== EventSource.CLOSED) {
        live.dataset.state = "connecting";
        live.textContent = "reconnecting";
      }
    });
  }
  connect();

  // The timeline's "now" moves even when nothing changes.
  if (document.querySelector(".timeline")) {
    setInterval(() => { if (!document.hidden) refresh(); }, 60000);
  }

  // Forms whose selects apply at once.
  document.addEventListener("change", (event) => {
    if (event.target.matches("select.autosubmit")) event.target.form.requestSubmit();
  });

  // Actions: ask first, then POST with the CSRF token; show what the server answered.
  function confirmAction(text, askReason) {
    return new Promise((resolve) => {
      document.getElementById("confirm-text").textContent = text;
      const reasonLabel = document.getElementById("confirm-reason-label");
      const reason = document.getElementById("confirm-reason");
      reasonLabel.hidden = !askReason;
      reason.value = "";
      dialog.addEventListener("close", function done() {
        dialog.removeEventListener("close", done);
        resolve(dialog.returnValue === "ok" ? { reason: reason.value } : null);
      });
      dialog.returnValue = "";
      dialog.showModal();
    });
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button.action");
    if (!button || button.disabled) return;
    const action = button.dataset.action;
    const answer = await confirmAction(button.dataset.confirm, action === "suspend");
    if (!answer) return;
    button.disabled = true; // one click, one request
    show(notice, "");
    show(problem, "");
    const body = new URLSearchParams();
    if (answer.reason) body.set("reason", answer.reason);
    try {
      const response = await fetch(button.dataset.url, {
        method: "POST",
        headers: { "X-CSRF-Token": csrf, "Accept": "application/json" },
        body: body,
        credentials: "same-origin",
      });
      let data = {};
      try {
        data = await response.json();
      } catch (error) {
        data = { error: response.status + " " + response.statusText };
      }
      if (response.ok) {
        show(notice, data.message || "Done.");
      } else {
        show(problem, data.error || response.status + " " + response.statusText);
      }
    } catch (error) {
      show(problem, "The request failed: " + error);
    } finally {
      button.disabled = false;
      refresh();
    }
  });
})();
