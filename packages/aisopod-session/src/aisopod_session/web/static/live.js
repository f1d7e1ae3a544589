// Follows a session page's new entries: polls the server for the entries after
// the last one shown and appends them as the server rendered them (escaped there).
// No inline script anywhere: the page's Content-Security-Policy forbids it.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var list = document.getElementById("entries");
  if (!live || !list) {
    return;
  }
  var every = 2000;
  function poll() {
    var url = live.getAttribute("data-src") + "?after=" + encodeURIComponent(live.getAttribute("data-after"));
    fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        var last = response.headers.get("X-Last-Seq");
        return response.text().then(function (html) {
          return { last: last, html: html };
        });
      })
      .then(function (page) {
        if (page.html.trim()) {
          var parsed = new DOMParser().parseFromString(page.html, "text/html");
          Array.prototype.forEach.call(parsed.body.children, function (node) {
            // An entry appended while the page was read may be on it already.
            if (!node.id || !document.getElementById(node.id)) {
              list.appendChild(document.importNode(node, true));
            }
          });
          window.scrollTo(0, document.body.scrollHeight);
        }
        if (page.last) {
          live.setAttribute("data-after", page.last);
        }
        live.classList.remove("stale");
        window.setTimeout(poll, every);
      })
      .catch(function () {
        live.classList.add("stale");
        window.setTimeout(poll, every * 5);
      });
  }
  window.setTimeout(poll, every);
})();
