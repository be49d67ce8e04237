/* Live updates: ONE EventSource to /api/events per tab, turned into DOM events htmx regions listen to.
 *
 * Events, all dispatched on document.body:
 *   "blogimg:image"    one per image status change, as it arrives;
 *                      detail = {id, image_id, batch_id, status, at} (id: the event's id).
 *   "blogimg:refresh"  at most once a second, and always once after the last change of a burst;
 *                      detail = {events: [...the changes since the previous refresh]}.
 *                      Regions use this one: hx-trigger="blogimg:refresh from:body".
 *                      (htmx's own "throttle:1s" drops the last event of a burst, which would
 *                      leave a region showing the state before the batch's final change.)
 *   "blogimg:live"     the connection's state changed; detail = {state: "live"|"connecting"|"paused"}.
 *
 * A hidden tab stops listening: on visibilitychange with document.hidden the EventSource is
 * closed; when the tab is shown again it reopens after the last event it received (?after=), so
 * the changes it missed arrive at once and the regions refresh. A page starts from
 * <body data-last-event-id>, the newest event when the server made it, so nothing that changed
 * while the page loaded is missed either.
 *
 * A region holding an open <details> (a confirmation being read) is not refreshed until it closes.
 *
 * window.blogimgLive: {state(), lastEventId(), readyState()} for scripts and tests.
 */
(function () {
  "use strict";
  var REFRESH_MILLISECONDS = 1000;
  var RETRY_MILLISECONDS = 5000;
  var body = document.body;
  var source = null;
  var state = "connecting";
  var lastEventId = parseInt(body.getAttribute("data-last-event-id") || "", 10);
  var pending = [];
  var refreshTimer = null;
  var lastRefresh = 0;
  var retryTimer = null;

  if (isNaN(lastEventId)) {
    lastEventId = null; // the server starts the stream at "now"
  }

  function setState(next) {
    if (state === next) {
      return;
    }
    state = next;
    var indicator = document.getElementById("live-state");
    if (indicator) {
      indicator.setAttribute("data-state", next);
      var text = indicator.querySelector(".live-state__text");
      if (text) {
        text.textContent = next === "live" ? "Live" : next === "paused" ? "Paused" : "Connecting";
      }
    }
    body.dispatchEvent(new CustomEvent("blogimg:live", { detail: { state: next } }));
  }

  function refresh() {
    refreshTimer = null;
    lastRefresh = Date.now();
    var events = pending;
    pending = [];
    body.dispatchEvent(new CustomEvent("blogimg:refresh", { detail: { events: events } }));
  }

  function scheduleRefresh(change) {
    pending.push(change);
    if (refreshTimer === null) {
      // At once after a quiet second; else when the second since the last refresh is up.
      refreshTimer = window.setTimeout(refresh, Math.max(0, lastRefresh + REFRESH_MILLISECONDS - Date.now()));
    }
  }

  function onImage(message) {
    var change;
    try {
      change = JSON.parse(message.data);
    } catch (error) {
      return;
    }
    var id = parseInt(message.lastEventId, 10);
    if (!isNaN(id)) {
      lastEventId = id;
      change.id = id;
    }
    body.dispatchEvent(new CustomEvent("blogimg:image", { detail: change }));
    scheduleRefresh(change);
  }

  function open() {
    if (source !== null || document.hidden) {
      return;
    }
    window.clearTimeout(retryTimer);
    retryTimer = null;
    setState("connecting");
    var url = "/api/events" + (lastEventId !== null ? "?after=" + lastEventId : "");
    source = new EventSource(url);
    source.addEventListener("open", function () {
      setState("live");
    });
    source.addEventListener("image", onImage);
    source.addEventListener("error", function () {
      // The browser reconnects by itself (with Last-Event-ID) unless the server refused the
      // stream (a 401 when the sign-in ended, a 5xx): then reopen later, after the last id.
      if (source !== null && source.readyState === EventSource.CLOSED) {
        source = null;
        setState("connecting");
        retryTimer = window.setTimeout(open, RETRY_MILLISECONDS);
      } else {
        setState("connecting");
      }
    });
  }

  function close() {
    window.clearTimeout(retryTimer);
    retryTimer = null;
    if (source !== null) {
      source.close();
      source = null;
    }
    setState("paused");
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      close();
    } else {
      open();
    }
  });
  // bfcache: a page restored from history reopens; one leaving it closes its stream.
  window.addEventListener("pagehide", close);
  window.addEventListener("pageshow", function () {
    open();
  });

  // A refresh would swap a region for a fresh copy and so close a confirmation the reader has
  // open in it (a <details>, "Retry all N matching…"). Such a region waits; closing the
  // confirmation refreshes everything once, so nothing that changed meanwhile is missed.
  var deferred = false;
  body.addEventListener("htmx:confirm", function (event) {
    var trigger = event.detail.triggeringEvent;
    var region = event.detail.elt;
    if (trigger && trigger.type === "blogimg:refresh" && region && region.querySelector("details[open]")) {
      event.preventDefault();
      deferred = true;
    }
  });
  document.addEventListener("toggle", function (event) {
    if (deferred && event.target instanceof HTMLDetailsElement && !event.target.open) {
      deferred = false;
      body.dispatchEvent(new CustomEvent("blogimg:refresh", { detail: { events: [] } }));
    }
  }, true); // "toggle" does not bubble

  window.blogimgLive = {
    state: function () {
      return state;
    },
    lastEventId: function () {
      return lastEventId;
    },
    readyState: function () {
      return source === null ? EventSource.CLOSED : source.readyState;
    },
  };

  if (document.hidden) {
    setState("paused");
  } else {
    open();
  }
})();
