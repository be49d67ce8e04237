/* The image and failures views: JSON requests to the REST API, focal-point clicks, the copy button.
 *
 * - htmx extension "blogimg-json": a form (or button) with hx-ext="blogimg-json" sends JSON, as the
 *   API expects: data-json="<body>" is sent as it is; data-json-form="alt_text" | "rating" |
 *   "focal_point" turns the form's fields into that field of PUT /api/images/{id}. The CSRF header
 *   comes from base.html's hx-headers like every htmx request.
 * - After any htmx request from an element with data-done-message: the message (or the API's
 *   error message) goes to the page's status region (role="status", read by screen readers), and
 *   data-refresh="<selector>" makes that region fetch itself again ("blogimg:image-changed").
 * - A click on [data-focal-target] sets the focal-point form's fields to where it was clicked (as
 *   fractions of the picture) and submits the form; the number fields are the keyboard's way.
 * - [data-copy-from] copies that element's text: navigator.clipboard, else a selected textarea and
 *   execCommand("copy") (plain http on another host has no clipboard API); the outcome is announced.
 * - The image view's live region refreshes when live.js reports a change of this image.
 */
(function () {
  "use strict";

  function statusRegion() {
    return document.getElementById("image-action-status") || document.getElementById("failures-action-status");
  }

  function announce(text, failed) {
    var region = statusRegion();
    if (!region) {
      return;
    }
    region.textContent = "";
    region.classList.toggle("action-status--error", Boolean(failed));
    // A fresh text node after clearing, so that the same message twice is announced twice.
    window.setTimeout(function () {
      region.textContent = text;
    }, 30);
    // The toast goes after a while; an error stays until the next action.
    window.clearTimeout(announce.timer);
    if (!failed) {
      announce.timer = window.setTimeout(function () {
        if (region.textContent === text) {
          region.textContent = "";
        }
      }, 8000);
    }
  }

  function fieldsOf(parameters) {
    var fields = {};
    parameters.forEach(function (value, name) {
      fields[name] = value;
    });
    return fields;
  }

  function jsonBody(element, parameters) {
    var fixed = element.getAttribute("data-json");
    if (fixed !== null) {
      return fixed;
    }
    var form = element.closest("[data-json-form]");
    var shape = form ? form.getAttribute("data-json-form") : null;
    var fields = fieldsOf(parameters);
    if (shape === "alt_text") {
      return JSON.stringify({ alt_text: fields.alt_text || "" });
    }
    if (shape === "rating") {
      return JSON.stringify({ rating: parseInt(fields.rating, 10) });
    }
    if (shape === "focal_point") {
      return JSON.stringify({ focal_point: { x: parseFloat(fields.x), y: parseFloat(fields.y) } });
    }
    delete fields.csrf_token;
    return JSON.stringify(fields);
  }

  function defineExtension() {
    if (!window.htmx) {
      return;
    }
    window.htmx.defineExtension("blogimg-json", {
      onEvent: function (name, event) {
        if (name === "htmx:configRequest") {
          event.detail.headers["Content-Type"] = "application/json";
          event.detail.headers.Accept = "application/json";
        }
        return true;
      },
      encodeParameters: function (request, parameters, element) {
        request.overrideMimeType("text/json");
        return jsonBody(element, parameters);
      },
    });
  }

  function errorMessage(request) {
    try {
      var body = JSON.parse(request.responseText);
      if (body && body.error && body.error.message) {
        return body.error.message;
      }
    } catch (error) {
      // not JSON: say what the status says
    }
    return "The server answered " + request.status + (request.statusText ? " " + request.statusText : "") + ".";
  }

  function fillMessage(template, request) {
    // "{count}" in a message is the number of images the answer names (a bulk retry's).
    if (template.indexOf("{count}") < 0) {
      return template;
    }
    try {
      var body = JSON.parse(request.responseText);
      var count = body && body.image_ids ? body.image_ids.length : 0;
      return template.replace("{count}", String(count)).replace("{s}", count === 1 ? "" : "s");
    } catch (error) {
      return template.replace("{count}", "the").replace("{s}", "s");
    }
  }

  function afterRequest(event) {
    var element = event.detail.elt;
    var source = element && element.closest ? element.closest("[data-done-message]") : null;
    if (!source) {
      return;
    }
    var request = event.detail.xhr;
    if (event.detail.successful) {
      announce(fillMessage(source.getAttribute("data-done-message"), request), false);
      var target = source.getAttribute("data-refresh");
      if (target) {
        document.querySelectorAll(target).forEach(function (region) {
          window.htmx.trigger(region, "blogimg:image-changed");
        });
      }
      if (source.hasAttribute("data-close-details")) {
        var details = source.closest("details");
        if (details) {
          details.open = false;
        }
      }
    } else if (request) {
      announce("Not saved: " + errorMessage(request), true);
    } else {
      announce("Not saved: the server could not be reached.", true);
    }
  }

  function onFocalClick(event) {
    var frame = event.target.closest("[data-focal-target]");
    if (!frame) {
      return;
    }
    var picture = frame.querySelector("img") || frame;
    var box = picture.getBoundingClientRect();
    if (box.width <= 0 || box.height <= 0) {
      return;
    }
    var x = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
    var y = Math.min(1, Math.max(0, (event.clientY - box.top) / box.height));
    var form = document.querySelector("form[data-json-form='focal_point']");
    if (!form) {
      return;
    }
    form.elements.x.value = x.toFixed(2);
    form.elements.y.value = y.toFixed(2);
    // Show the point at once; the region redraws from the server when the save is done.
    var marker = frame.querySelector(".focal__marker");
    if (!marker) {
      marker = document.createElement("span");
      marker.className = "focal__marker";
      marker.setAttribute("aria-hidden", "true");
      frame.appendChild(marker);
    }
    marker.style.left = (x * 100).toFixed(2) + "%";
    marker.style.top = (y * 100).toFixed(2) + "%";
    window.htmx.trigger(form, "submit");
  }

  function copyWithTextarea(text) {
    var scratch = document.createElement("textarea");
    scratch.value = text;
    scratch.setAttribute("readonly", "");
    scratch.style.position = "fixed";
    scratch.style.opacity = "0";
    document.body.appendChild(scratch);
    scratch.select();
    var copied = false;
    try {
      copied = document.execCommand("copy");
    } catch (error) {
      copied = false;
    }
    document.body.removeChild(scratch);
    return copied;
  }

  function onCopyClick(event) {
    var button = event.target.closest("[data-copy-from]");
    if (!button) {
      return;
    }
    var source = document.querySelector(button.getAttribute("data-copy-from"));
    var status = document.querySelector(button.getAttribute("data-copy-status"));
    if (!source) {
      return;
    }
    var text = source.value !== undefined ? source.value : source.textContent;
    function say(message) {
      if (status) {
        status.textContent = message;
      }
    }
    function fallback() {
      say(copyWithTextarea(text) ? "Copied to the clipboard." : "Copy failed: select the markup and copy it by hand.");
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () {
        say("Copied to the clipboard.");
      }, fallback);
    } else {
      fallback();
    }
  }

  function onRefresh(event) {
    var live = document.getElementById("image-live");
    var page = document.querySelector("[data-image-id]");
    if (!live || !page) {
      return;
    }
    var id = parseInt(page.getAttribute("data-image-id"), 10);
    var events = (event.detail && event.detail.events) || [];
    if (events.some(function (change) { return change.image_id === id; })) {
      window.htmx.trigger(live, "blogimg:image-changed");
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    defineExtension();
    document.body.addEventListener("htmx:afterRequest", afterRequest);
    document.body.addEventListener("blogimg:refresh", onRefresh);
    document.addEventListener("click", onCopyClick);
    document.addEventListener("click", onFocalClick);
  });
})();
