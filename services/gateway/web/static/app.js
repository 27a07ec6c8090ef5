// Marketlog's web front end: log in with an API key (kept in sessionStorage, never in a URL),
// then the trading screen or the day-trading screen. Everything is read from and written to the
// gateway's HTTP API and WebSocket streams; errors are shown exactly as the API gives them.

import { call, session } from "./api.js";
import { setUpDayTrading, startDayTrading, stopDayTrading } from "./daytrade.js";
import { setUpTrading, startTrading, stopTrading } from "./trade.js";
import { $, act, announce, clearError } from "./ui.js";

const SCREEN = "marketlog.screen";

function show(screen) {
  for (const button of document.querySelectorAll("button.screen")) {
    if (button.dataset.screen === screen) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  $("#trade").hidden = screen !== "trade";
  $("#daytrade").hidden = screen !== "daytrade";
  sessionStorage.setItem(SCREEN, screen);
  if (screen === "daytrade") startDayTrading();
}

async function logIn(key) {
  session.key = key;
  try {
    // the balance names the key's account; 401/403 (an unknown key, the admin's) end here
    const balance = await call("GET", "/account/balance");
    $("#account-id").textContent = balance.account_id;
  } catch (err) {
    session.key = null;
    throw err;
  }
  $("#login").hidden = true;
  $("#who").hidden = false;
  $("#welcome").hidden = true;
  announce(`Logged in as account ${$("#account-id").textContent}`);
  startTrading();
  show(sessionStorage.getItem(SCREEN) || "trade");
}

function logOut() {
  stopTrading();
  stopDayTrading();
  session.key = null;
  sessionStorage.clear();
  location.reload();
}

function setUp() {
  setUpTrading();
  setUpDayTrading();
  $("#login").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("#api-key");
    const key = input.value.trim();
    input.value = "";
    act(() => logIn(key));
  });
  $("#logout").addEventListener("click", logOut);
  for (const button of document.querySelectorAll("button.screen")) {
    button.addEventListener("click", () => {
      clearError();
      show(button.dataset.screen);
    });
  }
  if (session.key) act(() => logIn(session.key));
  document.body.dataset.ready = "true"; // scripts loaded and wired (the tests wait for this)
}

setUp();
