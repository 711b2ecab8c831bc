// dictmon dashboard: refreshes the page's #live part in place (scroll position and focus
// stay where they are) every data-refresh-seconds, says so when dictmon cannot be reached,
// and shows how long ago each time was. Without it the pages still work (noscript refresh).
"use strict";
(function () {
  function ago() {
    var now = Date.now();
    document.querySelectorAll("time[data-at]").forEach(function (t) {
      var s = Math.max(0, Math.round((now - Number(t.dataset.at)) / 1000));
      var text = s < 120 ? s + " s ago" : s < 7200 ? Math.round(s / 60) + " min ago"
        : s < 172800 ? Math.round(s / 3600) + " h ago" : Math.round(s / 86400) + " days ago";
      t.setAttribute("title", t.textContent.replace(/ \(.*\)$/, ""));
      t.dataset.ago = text;
      t.textContent = t.getAttribute("title") + " (" + text + ")";
    });
  }
  var seconds = Number(document.body.dataset.refreshSeconds);
  function say(text) {
    var c = document.getElementById("connection");
    if (c) c.textContent = text;
  }
  function refresh() {
    fetch(location.href, { cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live"), old = document.getElementById("live");
        if (fresh && old) {
          old.replaceWith(document.importNode(fresh, true));
          document.title = doc.title;
        }
        document.body.classList.remove("offline");
        document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
        ago();
      })
      .catch(function (e) {
        document.body.classList.add("offline");
        say("dictmon unreachable (" + e.message + "); showing the last page, retrying");
      })
      .finally(function () { setTimeout(refresh, seconds * 1000); });
  }
  ago();
  if (seconds > 0) setTimeout(refresh, seconds * 1000);
  setInterval(ago, 5000);
})();
