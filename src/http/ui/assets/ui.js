// hookwise dashboard: refreshes a live page's <main> every few seconds, without reloading the
// page. Paused while the tab is hidden or a form field has focus, so nothing typed is lost.
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main || !main.dataset.live) return;
  var every = Number(main.dataset.live) * 1000;
  var badge = document.getElementById("live");
  function busy() {
    var a = document.activeElement;
    return document.hidden || (a && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName));
  }
  function refresh() {
    if (busy()) { if (badge) badge.classList.add("paused"); return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { if (!r.ok || r.redirected) throw new Error(r.status); return r.text(); })
      .then(function (text) {
        var next = new DOMParser().parseFromString(text, "text/html").getElementById("main");
        if (!next || busy()) return;
        var open = Array.prototype.map.call(main.querySelectorAll("details[open][id]"), function (d) { return d.id; });
        main.innerHTML = next.innerHTML;
        open.forEach(function (id) { var d = document.getElementById(id); if (d) d.open = true; });
        if (badge) { badge.classList.remove("paused"); badge.textContent = "live"; }
      })
      .catch(function () { if (badge) { badge.classList.add("paused"); badge.textContent = "offline"; } });
  }
  window.setInterval(refresh, every);
})();
