/**
 * The page's one stylesheet, inlined (no external assets). Colours meet WCAG
 * AA contrast for their text (the browser test measures every text element);
 * tables size their columns from their content (table-layout: auto, numbers
 * and headers never wrap), so no column can overlap its neighbour, and a
 * table too wide for a narrow window scrolls inside its card. Commands sit in
 * minmax(0, 1fr) grid tracks: a long one scrolls in its box and never widens
 * the table or the card around it.
 */
export const STYLE = `
:root { --bg:#f6f7f9; --card:#fff; --ink:#1d2330; --muted:#556072; --line:#e3e6eb; --accent:#2158c2; --ok:#17703d; --bad:#b02a2a; --warn:#7f5410; --bar:#dbe6fb; --barfill:#2f6fde; --focus:#f0a500; }
* { box-sizing:border-box; }
body { margin:0; font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; background:var(--bg); color:var(--ink); }
a { color:var(--accent); }
:focus-visible { outline:3px solid var(--focus); outline-offset:2px; }
.skip { position:absolute; left:-9999px; top:0; background:#fff; color:var(--ink); padding:8px 12px; z-index:10; }
.skip:focus { left:8px; top:8px; }
.sr-only { position:absolute; width:1px; height:1px; overflow:hidden; clip:rect(0 0 0 0); white-space:nowrap; }
header { background:#17202e; color:#fff; padding:18px 32px; display:flex; align-items:baseline; gap:8px 18px; flex-wrap:wrap; }
header h1 { font-size:20px; margin:0; font-weight:650; letter-spacing:.2px; }
header h1 a { color:#fff; text-decoration:none; }
header .sub { color:#c3ccd9; font-size:13px; }
header a { color:#a9c8ff; }
main { max-width:1180px; margin:24px auto; padding:0 24px; }
.tools { display:flex; flex-wrap:wrap; align-items:center; gap:10px 14px; margin-bottom:18px; }
.tools label { font-weight:600; font-size:14px; }
.search { display:flex; flex:1 1 320px; max-width:560px; }
.search input { flex:1; min-width:0; font:inherit; padding:7px 10px; border:1px solid #8a94a6; border-radius:6px 0 0 6px; background:#fff; color:var(--ink); }
.search button, .btn { font:inherit; font-size:14px; border:1px solid #2a3a55; background:#2a3a55; color:#fff; padding:7px 14px; border-radius:0 6px 6px 0; cursor:pointer; }
.count { color:var(--muted); font-size:13px; }
.pager { display:flex; flex-wrap:wrap; gap:6px; align-items:center; margin:4px 0 22px; font-size:14px; }
.pager a, .pager span { padding:4px 10px; border-radius:6px; border:1px solid var(--line); background:var(--card); text-decoration:none; min-width:34px; text-align:center; }
.pager a:hover { border-color:var(--accent); }
.pager [aria-current] { background:#2a3a55; color:#fff; border-color:#2a3a55; font-weight:600; }
.pager .gap { border:0; background:none; color:var(--muted); min-width:0; padding:4px 2px; }
.pager .off { color:var(--muted); background:#eef0f3; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; margin-bottom:22px; box-shadow:0 1px 2px rgba(16,24,40,.04); overflow:hidden; }
.card.invalid { border-color:#efc3c3; }
.head { padding:16px 20px 12px; display:flex; gap:12px 16px; align-items:flex-start; justify-content:space-between; flex-wrap:wrap; }
.title { min-width:0; }
.title h2 { font-size:18px; margin:0 0 2px; overflow-wrap:anywhere; }
.title h2 a { color:var(--ink); text-decoration:none; }
.title h2 a:hover { color:var(--accent); text-decoration:underline; }
.title .id { font:13px ui-monospace,SFMono-Regular,Menlo,monospace; color:var(--muted); overflow-wrap:anywhere; }
.badges { display:flex; gap:6px; flex-wrap:wrap; margin-top:8px; }
.badge { font-size:12px; padding:2px 8px; border-radius:999px; background:#eef1f5; color:#3a4456; white-space:nowrap; }
.badge.ok { background:#e3f4ea; color:var(--ok); font-weight:600; }
.badge.bad { background:#fbe5e5; color:var(--bad); font-weight:600; }
.badge.warn { background:#fdf1dc; color:var(--warn); }
.links { display:flex; gap:6px 14px; font-size:13px; flex-wrap:wrap; }
.links a { text-decoration:none; }
.links a:hover { text-decoration:underline; }
.facts { display:flex; gap:6px 26px; padding:0 20px 12px; color:var(--muted); font-size:13px; flex-wrap:wrap; }
.facts b { color:var(--ink); font-weight:600; }
.reason { margin:0 20px 14px; padding:10px 12px; background:#fdf2f2; border:1px solid #f3cccc; border-radius:6px; color:#8c2323; font-size:13px; overflow-wrap:anywhere; }
.reason ul { margin:6px 0 0 18px; padding:0; }
.cmds { padding:0 20px 14px; display:grid; grid-template-columns:auto minmax(0,1fr); gap:6px 12px; align-items:center; }
.cmds .what { font-size:12px; color:var(--muted); font-weight:600; white-space:nowrap; }
.scroll { overflow-x:auto; }
table { width:100%; border-collapse:collapse; font-size:13.5px; }
th { text-align:left; font-weight:600; color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.4px; padding:8px 12px; background:#fafbfc; border-top:1px solid var(--line); border-bottom:1px solid var(--line); white-space:nowrap; }
td { padding:9px 12px; border-bottom:1px solid var(--line); vertical-align:middle; }
tr.part td { border-bottom:none; padding-bottom:4px; }
tr.cmdrow td { padding-top:0; padding-bottom:12px; }
tr:last-child td { border-bottom:none; }
.num { text-align:right; }
td.num { font-variant-numeric:tabular-nums; white-space:nowrap; }
td.num .of { display:block; font-size:12px; }
.type { font-weight:600; }
.mono { font:12.5px ui-monospace,SFMono-Regular,Menlo,monospace; }
.muted { color:var(--muted); }
.ratio { display:flex; align-items:center; gap:8px; }
.pct { white-space:nowrap; }
.bar { flex:1 1 60px; height:8px; background:var(--bar); border-radius:4px; overflow:hidden; min-width:36px; max-width:140px; }
.bar > span { display:block; height:100%; background:var(--barfill); border-radius:4px; }
.cmd { display:grid; grid-template-columns:minmax(0,1fr) auto; min-width:0; }
.cmd code { min-width:0; font:12px ui-monospace,SFMono-Regular,Menlo,monospace; background:#0f1724; color:#d7e3f7; padding:6px 9px; border-radius:5px 0 0 5px; overflow-x:auto; white-space:nowrap; }
.cmd button { border:0; background:#2a3a55; color:#fff; font-size:12px; padding:0 10px; border-radius:0 5px 5px 0; cursor:pointer; white-space:nowrap; }
.cmd button:hover { background:var(--accent); }
.sha { font:11.5px ui-monospace,monospace; color:var(--muted); white-space:nowrap; }
.empty { background:var(--card); border:1px dashed var(--line); border-radius:10px; padding:40px; text-align:center; color:var(--muted); }
footer { max-width:1180px; margin:0 auto 30px; padding:0 24px; color:var(--muted); font-size:12px; }
.crumb { font-size:14px; margin:0 0 14px; }
.detail h2 { font-size:16px; margin:0; padding:14px 20px 10px; }
.detail .title h2 { font-size:20px; padding:0; }
.reason.warnings { background:#fdf8ee; border-color:#f0dcb4; color:#6b4a10; }
.kv { display:grid; grid-template-columns:max-content minmax(0,1fr); gap:6px 18px; margin:0; padding:0 20px 16px; font-size:14px; }
.kv dt { color:var(--muted); }
.kv dd { margin:0; overflow-wrap:anywhere; }
.hash { display:flex; align-items:flex-start; gap:8px; }
.hash code { min-width:0; font:12px ui-monospace,SFMono-Regular,Menlo,monospace; overflow-wrap:anywhere; word-break:break-all; }
.hash button { flex:none; white-space:nowrap; border:1px solid #2a3a55; background:#fff; color:#2a3a55; font-size:12px; padding:1px 8px; border-radius:5px; cursor:pointer; }
.parts { display:grid; grid-template-columns:minmax(0,1fr); gap:14px; padding:0 20px 16px; }
.part-card { border:1px solid var(--line); border-radius:8px; }
.part-card h3 { font-size:15px; margin:0; padding:10px 14px 6px; }
.part-card .kv { padding:0 14px 10px; }
.part-card .cmd { padding:0 14px 12px; }
pre.raw { margin:0 20px 16px; padding:10px 12px; background:#f3f5f8; border-radius:6px; font-size:12.5px; overflow-x:auto; }
details summary { cursor:pointer; padding:0 20px 10px; font-size:13px; color:var(--accent); }
.pkgtools { display:flex; gap:10px 14px; align-items:center; flex-wrap:wrap; padding:0 20px 10px; }
.pkgtools input { font:inherit; padding:6px 10px; border:1px solid #8a94a6; border-radius:6px; min-width:0; flex:0 1 320px; }
.pkgs { max-height:420px; overflow:auto; border-top:1px solid var(--line); }
.pkgs td { padding:5px 12px; border-bottom:1px solid var(--line); }
.pkgs th { position:sticky; top:0; }
@media (max-width: 820px) {
  header { padding:14px 16px; }
  main, footer { padding:0 12px; }
  .head, .facts, .cmds { padding-left:14px; padding-right:14px; }
  th, td { padding-left:7px; padding-right:7px; }
  th { letter-spacing:0; }
  .bar { display:none; }
}
`;
