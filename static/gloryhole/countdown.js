// The pause's time left, counted down each second. The page already says it ("59 minutes
// left"); this only keeps it current, and reloads once the pause is over so the page shows
// blocking on again.
"use strict";
(() => {
  const pad = (n) => String(n).padStart(2, "0");
  const left = (ms) => {
    const s = Math.max(0, Math.ceil(ms / 1000));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? `${h}:${pad(m)}` : `${m}`) + `:${pad(sec)} left`;
  };
  const els = [...document.querySelectorAll("[data-until]")];
  if (!els.length) return;
  const tick = () => {
    let over = false;
    for (const el of els) {
      const ms = Number(el.dataset.until) * 1000 - Date.now();
      el.textContent = left(ms);
      if (ms <= 0) over = true;
    }
    if (over) window.location.reload();
    else setTimeout(tick, 1000 - (Date.now() % 1000));
  };
  tick();
})();
