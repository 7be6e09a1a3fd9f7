"""The report as one self-contained HTML file: tables, figures inlined as base64 PNG, provenance.
No external CSS, scripts or fonts, so it opens offline in any browser."""

import base64
from html import escape

from layerlth.analysis.cells import MISSING
from layerlth.analysis.formats import number, ours

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border-bottom:1px solid #e3e3e3;padding:.3em .6em;text-align:right;vertical-align:top;white-space:nowrap}
th{background:#f4f4f4;border-bottom:2px solid #bbb} td.l,th.l{text-align:left}
.paper{color:#666;font-size:.9em;display:block} .yes{color:#1a7f37;font-weight:600} .no{color:#c62828;font-weight:600}
.note{color:#555;font-size:.88em;margin:.2em 0} .missing{color:#777}
tr.setting td{background:#fafafa;font-weight:600;color:#444;padding-top:.5em}
figure{margin:1.2em 0} figure img{max-width:100%;border:1px solid #eee} figcaption{color:#555;font-size:.9em}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em} dt{font-weight:600} dd{margin:0}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.85em} .scroll{overflow-x:auto}
"""


def _cell(cell):
    text = escape(ours(cell))
    if cell.paper is not None:
        sign = {True: '<b class="yes">✓</b>', False: '<b class="no">✗</b>'}.get(cell.agrees, "")
        text += f'<span class="paper">paper {number(cell.paper, cell.unit)} {sign}</span>'
    return f'<td{" class=missing" if cell.mean is None else ""}>{text}</td>'


def table_html(table):
    parts = [f'<h3 id="{table.name}">Table {table.number}. {escape(table.title)}</h3>']
    if table.rows:
        head = "".join(f"<th>{escape(h)}</th>" for h in table.columns.values())
        parts.append(f'<div class="scroll"><table><tr><th class="l">ticket</th>{head}</tr>')
        setting = None
        for row in table.rows:
            if row.setting != setting:  # one heading row per dense setting instead of a repeated column
                setting = row.setting
                parts.append(f'<tr class="setting"><td class="l" colspan="{len(table.columns) + 1}">'
                             f"{escape(setting)}</td></tr>")
            cells = "".join(_cell(row.cells.get(c, MISSING)) for c in table.columns)
            parts.append(f'<tr><td class="l">{escape(row.label)}</td>{cells}</tr>')
        parts.append("</table></div>")
    else:
        parts.append('<p class="note">No trials of this kind in the sweep.</p>')
    parts += [f'<p class="note">{escape(note)}</p>' for note in table.notes]
    return "\n".join(parts)


def _list(items, empty):
    if not items:
        return f"<p>{escape(empty)}</p>"
    return "<ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>"


def _counts(counts):
    return ", ".join(f"{escape(str(k))}: {v}" for k, v in counts.items()) or "-"


def provenance_html(info):
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    known = bool(info["grid_text"])
    grid = f"<details><summary>grid file</summary><pre>{escape(info['grid_text'])}</pre></details>" if known else ""
    missing = len(info["missing"]) if known else "unknown (no grid)"
    return f"""<h2 id="provenance">Provenance</h2>
<dl><dt>grid</dt><dd>{escape(info['grid'])}{grid}</dd>
<dt>trials</dt><dd>{_counts(info['trials'])}; missing from the grid: {missing}</dd>
<dt>hardware</dt><dd>{_counts(info['hardware'])}</dd>
<dt>emissions method</dt><dd>{_counts(info['emissions'])}</dd>
<dt>memory method</dt><dd>{escape(', '.join(info['memory']) or '-')}</dd>
<dt>git commit</dt><dd>{escape(info['git_commit'])}</dd>
<dt>libraries</dt><dd>{escape(versions)}</dd>
<dt>report built on</dt><dd>{escape(info['report_machine'])}</dd></dl>
<h3>Errored trials</h3>{_list(info['errored'], 'none')}
<h3>Missing trials (in the grid, no result)</h3>{_list(info['missing'], 'none' if known else 'unknown: no grid')}"""


def figure_html(name, caption, png_bytes):
    data = base64.b64encode(png_bytes).decode()
    return (f'<figure id="fig-{name}"><img alt="{escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def page(title, tables, figures, info, skipped):
    """figures: [(name, caption, png bytes)]; skipped: [(name, why)]."""
    toc = " · ".join(f'<a href="#{t.name}">Table {t.number}</a>' for t in tables)
    body = [f"<h1>{escape(title)}</h1>",
            f'<p class="note">{toc} · <a href="#figures">figures</a> · <a href="#provenance">provenance</a></p>',
            '<p class="note">Cells: our mean ± std over seeds (number of seeds); below, the paper\'s value, '
            "<b class=\"yes\">✓</b> when ours falls on the same side (win or lose at xi = 0; saving or cost; "
            "faster or slower), <b class=\"no\">✗</b> when not; - where the sweep has no such trial.</p>",
            '<h2 id="tables">Tables</h2>', *map(table_html, tables),
            '<h2 id="figures">Figures</h2>', *(figure_html(*f) for f in figures)]
    if skipped:
        body += ['<p class="note">Figures not drawn:</p>', _list([f"{name}: {why}" for name, why in skipped], "")]
    body.append(provenance_html(info))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
