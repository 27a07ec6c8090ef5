// What every screen shares: the error line (the API's text, verbatim), the status line
// (aria-live, for answers and fills), and table rows built from text (never from HTML).

export const $ = (selector) => document.querySelector(selector);

export function showError(err) {
  $("#error-status").textContent = err.status ? String(err.status) : "";
  $("#error-text").textContent = err.message;
  $("#error").hidden = false;
}

export function clearError() {
  $("#error").hidden = true;
  $("#error-status").textContent = "";
  $("#error-text").textContent = "";
}

export function announce(text) {
  $("#status").textContent = text;
}

// Run one user action: clear the last error first, show this one's if it fails.
export async function act(action) {
  clearError();
  try {
    return await action();
  } catch (err) {
    showError(err);
    return undefined;
  }
}

// Replace a table body's rows: one array of cell texts (or Nodes) per row.
export function fill(tbody, rows) {
  const out = rows.map((cells) => {
    const tr = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      if (cell instanceof Node) td.append(cell);
      else td.textContent = cell ?? "";
      tr.append(td);
    }
    return tr;
  });
  tbody.replaceChildren(...out);
}

export function formValues(form) {
  const out = {};
  for (const [name, value] of new FormData(form)) out[name] = String(value).trim();
  return out;
}

export function timeOf(microseconds) {
  return new Date(Math.floor(microseconds / 1000)).toLocaleTimeString([], { hour12: false });
}

// One trailing call per burst (a fill brings several decisions at once).
export function debounce(fn, ms) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}
