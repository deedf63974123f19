/**
 * The page's one script, inlined. The page works without it (the filter is
 * a GET form, paging is links); with it, Copy buttons copy, the filter
 * answers as one types, and the detail view's package list searches itself.
 */
export const SCRIPT = `
const say = (msg) => { const s = document.getElementById('status'); if (s) { s.textContent = ''; setTimeout(() => (s.textContent = msg), 30); } };

// Copy: the clipboard where the page may write it (https, localhost); elsewhere
// the command is selected and the old copy command tried, and the button says which.
document.addEventListener('click', async (e) => {
  const b = e.target.closest('button[data-copy]');
  if (!b) return;
  const code = b.parentElement.querySelector('code');
  const text = code.textContent;
  let done = 'Copied';
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const r = document.createRange();
    r.selectNodeContents(code);
    const s = getSelection();
    s.removeAllRanges();
    s.addRange(r);
    let ok = false;
    try { ok = document.execCommand('copy'); } catch {}
    done = ok ? 'Copied' : 'Selected';
  }
  b.textContent = done;
  say(done === 'Copied' ? 'Copied to the clipboard' : 'Selected: press Ctrl+C to copy');
  setTimeout(() => (b.textContent = 'Copy'), 1500);
});

// The filter: the same GET the form sends, its results swapped in as one types.
const form = document.getElementById('filter');
if (form) {
  const q = form.elements.q;
  let timer = 0;
  let seq = 0;
  const load = async () => {
    const url = new URL(form.action, location.href);
    if (q.value.trim()) url.searchParams.set('q', q.value.trim());
    const mine = ++seq;
    try {
      const res = await fetch(url, { headers: { Accept: 'text/html' } });
      if (!res.ok) throw new Error(String(res.status));
      const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
      if (mine !== seq) return;
      document.getElementById('results').replaceWith(doc.getElementById('results'));
      document.getElementById('count').textContent = doc.getElementById('count').textContent;
      history.replaceState(null, '', url);
    } catch {
      location.assign(url);
    }
  };
  q.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(load, 200); });
  form.addEventListener('submit', (e) => { e.preventDefault(); clearTimeout(timer); load(); });
}

// The detail view's package search: rows whose text holds every word.
const pq = document.getElementById('pkgq');
if (pq) {
  const rows = [...document.querySelectorAll('#pkgs tbody tr')];
  const texts = rows.map((r) => [...r.cells].map((c) => c.textContent).join(' ').toLowerCase());
  const count = document.getElementById('pkgcount');
  pq.form.addEventListener('submit', (e) => e.preventDefault());
  pq.addEventListener('input', () => {
    const words = pq.value.toLowerCase().split(/\\s+/).filter(Boolean);
    let shown = 0;
    rows.forEach((r, i) => {
      const hit = words.every((w) => texts[i].includes(w));
      r.hidden = !hit;
      if (hit) shown++;
    });
    count.textContent = shown === rows.length ? rows.length + ' packages' : shown + ' of ' + rows.length + ' packages';
  });
}
`;
