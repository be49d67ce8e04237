/* The colour theme: the system's (prefers-color-scheme) unless the person picked light or dark.
 *
 * Loaded blocking in <head>, before the stylesheet, so the chosen theme is on <html> before the
 * first paint: no flash of the other theme. The choice lives in localStorage ("blogimg-theme":
 * "light" | "dark"; absent = system). Changing it dispatches "blogimg:theme" on document, so
 * charts can redraw in the new colours.
 */
(function () {
  "use strict";
  var KEY = "blogimg-theme";
  var root = document.documentElement;

  function stored() {
    try {
      var value = window.localStorage.getItem(KEY);
      return value === "light" || value === "dark" ? value : "system";
    } catch (error) {
      return "system"; // storage blocked (privacy mode): follow the system
    }
  }

  function apply(choice) {
    if (choice === "light" || choice === "dark") {
      root.setAttribute("data-theme", choice);
    } else {
      root.removeAttribute("data-theme");
    }
  }

  function remember(choice) {
    try {
      if (choice === "system") {
        window.localStorage.removeItem(KEY);
      } else {
        window.localStorage.setItem(KEY, choice);
      }
    } catch (error) {
      /* not kept; it still applies to this page */
    }
  }

  function syncControl() {
    var select = document.getElementById("theme-choice");
    if (select) {
      select.value = stored();
    }
  }

  apply(stored());

  // Delegated: the control may be swapped by htmx (a boosted page), its listener would go with it.
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (!target || target.id !== "theme-choice") {
      return;
    }
    remember(target.value);
    apply(target.value);
    document.dispatchEvent(new CustomEvent("blogimg:theme", { detail: { theme: target.value } }));
  });
  document.addEventListener("DOMContentLoaded", syncControl);
  document.addEventListener("htmx:afterSettle", syncControl);
  if (window.matchMedia) {
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", function () {
      document.dispatchEvent(new CustomEvent("blogimg:theme", { detail: { theme: stored() } }));
    });
  }
})();
