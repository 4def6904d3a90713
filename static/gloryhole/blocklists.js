// Blocklists page: while a "fetch now" is pending or running, poll its small JSON
// endpoint and show the state in place; reload once it is done, for the new counts.
// Without JavaScript the page reloads itself (a <noscript> refresh) instead.
(function () {
  "use strict";
  const box = document.getElementById("lists");
  if (!box) return;
  const template = box.dataset.statusUrl;
  const rows = box.querySelectorAll("tr.fetch-row[data-fetch-active]");
  rows.forEach((row) => {
    const url = template.replace("/0/", "/" + row.dataset.fetchFor + "/");
    const state = row.querySelector('[data-field="state"]');
    const message = row.querySelector('[data-field="message"]');
    function poll() {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))))
        .then((data) => {
          state.textContent = "fetch " + data.state;
          state.className = "badge fetch-" + data.state;
          message.textContent = data.message;
          if (data.state === "pending" || data.state === "running") {
            window.setTimeout(poll, 1000);
          } else {
            window.location.reload();
          }
        })
        .catch(() => window.setTimeout(poll, 3000));
    }
    window.setTimeout(poll, 500);
  });
})();
