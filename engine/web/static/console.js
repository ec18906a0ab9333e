// The console's only script: the lease countdown, the fields of the chosen disposition, and
// the member's local time of a callback. Every page also works without it (the server
// checks everything).
"use strict";

function leaseCountdown() {
  const lease = document.getElementById("lease");
  const out = document.getElementById("countdown");
  if (!lease || !out) return;
  const until = Date.parse(lease.getAttribute("datetime"));
  const tick = () => {
    const left = Math.max(0, Math.round((until - Date.now()) / 1000));
    out.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
    out.classList.toggle("low", left < 120);
  };
  tick();
  setInterval(tick, 1000);
}

function chosenFields() {
  const select = document.getElementById("disposition");
  if (!select) return;
  const show = () => {
    let asksVerified = false;
    for (const set of document.querySelectorAll("fieldset.disposition-fields")) {
      const on = set.dataset.code === select.value;
      set.hidden = !on;
      set.disabled = !on; // a hidden fieldset is neither checked nor sent
      for (const input of set.querySelectorAll("[data-required]")) {
        input.required = on && input.dataset.required === "yes";
      }
      if (on) asksVerified = set.dataset.asksVerified === "yes";
    }
    const verified = document.getElementById("verified-set");
    verified.hidden = !asksVerified;
    verified.disabled = !asksVerified;
  };
  select.addEventListener("change", show);
  show();
}

// Milliseconds east of UTC of `zone` at instant `ms`.
function offsetAt(zone, ms) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-US", {
      timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    }).formatToParts(new Date(ms)).map((p) => [p.type, p.value]),
  );
  const asUtc = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour, +parts.minute, +parts.second);
  return asUtc - ms;
}

function memberTime() {
  const form = document.getElementById("log-form");
  if (!form) return;
  const agentZone = form.dataset.agentZone;
  const memberZone = form.dataset.memberZone;
  if (!agentZone || !memberZone) return;
  for (const input of form.querySelectorAll("input[type=datetime-local]")) {
    const out = document.getElementById(`${input.id}-member`);
    const update = () => {
      const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(input.value);
      if (!m) { out.textContent = memberZone; return; }
      const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
      const instant = wall - offsetAt(agentZone, wall - offsetAt(agentZone, wall));
      const shown = new Intl.DateTimeFormat("en-GB", {
        timeZone: memberZone, weekday: "short", hour: "2-digit", minute: "2-digit",
      }).format(new Date(instant));
      out.textContent = `${shown} ${memberZone}`;
    };
    input.addEventListener("input", update);
    update();
  }
}

// A page that asks to refresh itself (<meta name="console-refresh" content="SECONDS">, the
// wallboard) reloads on a timer the reader can stop and start again (WCAG 2.2.1: a meta
// refresh cannot be stopped). The choice lasts for the browser tab.
function selfRefresh() {
  const meta = document.querySelector('meta[name="console-refresh"]');
  const main = document.getElementById("main");
  if (!meta || !main) return;
  const seconds = Number(meta.content) || 30;
  const key = "console-refresh-stopped";
  const button = document.createElement("button");
  button.type = "button";
  button.id = "refresh-toggle";
  let timer = null;
  const apply = () => {
    const stopped = sessionStorage.getItem(key) === "1";
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(() => window.location.reload(), seconds * 1000);
    button.textContent = stopped ? "Start refreshing" : `Stop refreshing (every ${seconds} s)`;
    button.setAttribute("aria-pressed", stopped ? "true" : "false");
  };
  button.addEventListener("click", () => {
    sessionStorage.setItem(key, sessionStorage.getItem(key) === "1" ? "0" : "1");
    apply();
  });
  main.prepend(button);
  apply();
}

// A page given in answer to a form's POST that is the page of another address (Next call
// answers with the call sheet of /agent, #19) shows that address, and a reload reads it
// instead of posting the form again.
function ownAddress() {
  const address = document.body.dataset.address;
  if (address && window.location.pathname !== address) {
    window.history.replaceState(null, "", address);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  ownAddress();
  leaseCountdown();
  chosenFields();
  memberTime();
  selfRefresh();
});
