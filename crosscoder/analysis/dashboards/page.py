"""`dashboards.html`: one self-contained page (no external resources) for every dashboard in latents.json.

The page embeds the records as JSON and draws the selected latent with a short script: a searchable list (latent id,
`#id`, class, label, or any token of its logit lens and top contexts), and per latent its numbers, activation
histogram, logit-lens tables (each model's decoder and the decoder difference), top-activating contexts and random
contexts from each activation band, the highest band first. The density histogram of all latents (log10 of the
fraction of tokens each fires on) is drawn with the project's chart stack.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from crosscoder.analysis.report.html import CSS, esc
from crosscoder.charts import html_page, inline, stacked_histogram
from crosscoder.io import atomic_write_text, read_json

_PAGE_CSS = """
.dash{display:grid;grid-template-columns:300px 1fr;gap:18px}
#list{max-height:80vh;overflow-y:auto;border:1px solid var(--line);border-radius:6px}
#list div{padding:3px 8px;cursor:pointer;border-bottom:1px solid #f1f3f5;font-size:13px}
#list div:hover,#list div.sel{background:#fff4e6}
#q{width:100%;padding:6px 8px;margin-bottom:8px;border:1px solid var(--line);border-radius:6px}
.ctx{font-family:"DejaVu Sans Mono",monospace;font-size:12.5px;margin:3px 0;white-space:pre-wrap}
.tok{border-radius:2px}.tok.max{outline:1px solid #d9480f}
.lens{display:flex;gap:14px;flex-wrap:wrap}.lens table{font-size:12px;border-collapse:collapse}
.lens td{padding:1px 6px;border-bottom:1px solid #f1f3f5}
.hist rect{fill:#d9480f}
.density svg{max-width:640px}
"""

_SCRIPT = r"""
const D = JSON.parse(document.getElementById('data').textContent);
const L = D.latents, list = document.getElementById('list'), view = document.getElementById('view');
function esc(s){return String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));}
function tok(s){return esc(s).replace(/\n/g,'\u21b5').replace(/ /g,'\u00a0');}
function ctx(e,scale){let h='<div class="ctx">';e.tokens.forEach((t,i)=>{const a=Math.max(0,Math.min(1,(e.acts[i]||0)/scale));
 h+=`<span class="tok${i==e.max_pos?' max':''}" style="background:rgba(253,126,20,${a.toFixed(2)})" title="act ${(e.acts[i]||0).toPrecision(3)}">${tok(t)}</span>`;});
 return h+` <span class="muted">(${e.max_act.toPrecision(3)})</span></div>`;}
function hist(d){const n=d.hist.length,m=Math.max(1,...d.hist),w=360,h=70;let s=`<svg class="hist" width="${w}" height="${h+14}">`;
 d.hist.forEach((c,i)=>{const bh=c?Math.max(1,h*Math.log1p(c)/Math.log1p(m)):0;
  s+=`<rect x="${i*w/n}" y="${h-bh}" width="${w/n-1}" height="${bh}"><title>${c} tokens in [${(i*d.max_act/n).toPrecision(3)}, ${((i+1)*d.max_act/n).toPrecision(3)})</title></rect>`;});
 return s+`<text x="0" y="${h+12}" font-size="10">0</text><text x="${w-40}" y="${h+12}" font-size="10">${d.max_act.toPrecision(3)}</text></svg>`;}
function lens(d){let h='<div class="lens">';for(const [k,v] of Object.entries(d.lens)){h+=`<table><tr><th colspan="2">${esc(k)}${k=='diff'?' (ft \u2212 base)':''}</th></tr>`;
 for(let i=0;i<v.promoted.length;i++){const p=v.promoted[i],q=v.suppressed[i]||['',0];
  h+=`<tr><td style="color:#2b8a3e">${tok(p[0])}</td><td style="color:#c92a2a">${tok(q[0])}</td></tr>`;}h+='</table>';}return h+'</div>';}
function show(i){const d=L[i];[...list.children].forEach((c,k)=>c.classList.toggle('sel',+c.dataset.i==i));
 let h=`<h2>Latent #${d.latent} <span class="muted">${esc(d.cls)}${d.label&&d.label!='unlabelled'?' \u00b7 '+esc(d.label):''}${d.rank>0?' \u00b7 rank '+d.rank:''}</span></h2>`;
 h+=`<p>density ${(100*d.density).toPrecision(3)}% \u00b7 max ${d.max_act.toPrecision(3)} \u00b7 mean when active ${d.mean_act.toPrecision(3)} \u00b7 relative decoder norm ${d.rel_norm.toFixed(3)} \u00b7 decoder cosine ${d.cos.toFixed(3)}</p>`;
 h+='<h3>Activation histogram (log counts)</h3>'+hist(d)+'<h3>Logit lens (promoted / suppressed)</h3>'+lens(d);
 h+='<h3>Top activations</h3>'+(d.top.map(e=>ctx(e,d.max_act)).join('')||'<p class="muted">none</p>');
 for(let b=d.bands.length-1;b>=0;b--){if(!d.bands[b].length)continue;
  h+=`<h3>Band ${b+1}/${d.bands.length}: activations in (${(b/d.bands.length*d.max_act).toPrecision(3)}, ${((b+1)/d.bands.length*d.max_act).toPrecision(3)}]</h3>`+d.bands[b].map(e=>ctx(e,d.max_act)).join('');}
 view.innerHTML=h; location.hash='#'+d.latent;}
function words(d){const w=[String(d.latent),'#'+d.latent,d.cls,d.label];for(const v of Object.values(d.lens))v.promoted.forEach(p=>w.push(p[0]));
 d.top.forEach(e=>w.push(e.tokens[e.max_pos]));return w.join('\u0001').toLowerCase();}
const W=L.map(words);
function render(q){q=q.trim().toLowerCase();list.innerHTML='';let n=0;L.forEach((d,i)=>{
 if(q&&!(q.startsWith('#')||/^\d+$/.test(q)?String(d.latent)==q.replace('#',''):W[i].includes(q)))return;if(n++>2000)return;
 const el=document.createElement('div');el.dataset.i=i;el.textContent=`#${d.latent}  ${d.cls}  ${d.label&&d.label!='unlabelled'?d.label+'  ':''}${(100*d.density).toPrecision(2)}%`;
 el.onclick=()=>show(i);list.appendChild(el);});}
document.getElementById('q').oninput=e=>render(e.target.value);render('');
const start=L.findIndex(d=>'#'+d.latent==location.hash);if(L.length)show(start>=0?start:0);
"""


def _density_chart(density: np.ndarray) -> str:
    live = density[density > 0]
    if live.size == 0:
        return inline(None, "latent density", "no latent fired")
    lo = float(np.floor(np.log10(live.min())))
    chart = stacked_histogram({"live latents": np.log10(live)}, {"live latents": "#d9480f"}, 40, (lo, 0.0),
                              "Activation density of every live latent", "log10 (fraction of tokens it fires on)",
                              log_y=False)  # fmt: skip
    return inline(chart, "latent density")


def write_page(folder: Path) -> Path:
    """Write `<folder>/dashboards.html` from `<folder>/latents.json`; returns the page's path."""
    from crosscoder.analysis.dashboards.build import DATA_FILE, PAGE_FILE

    data = read_json(folder / DATA_FILE)
    density = np.asarray(data.get("density_all") or [], dtype=float)
    n = len(data["latents"])
    head = (f"<header><h1>Latent dashboards</h1><div class='meta'>{n} dashboards of {data['n_latents']} latents "
            f"({data['n_live']} live) \u00b7 models {esc(', '.join(data['models']))}</div></header>")  # fmt: skip
    payload = json.dumps({"latents": data["latents"]}, ensure_ascii=True).replace("</", "<\\/")
    body = (f"{head}<h2>Activation density</h2><div class='density'>{_density_chart(density)}</div><h2>Latents</h2><div class='dash'>"
            f"<div><input id='q' placeholder='search: 123, #123, class, label or token'><div id='list'></div></div>"
            f"<div id='view'></div></div><script id='data' type='application/json'>{payload}</script>"
            f"<script>{_SCRIPT}</script>")  # fmt: skip
    path = folder / PAGE_FILE
    atomic_write_text(path, html_page("latent dashboards", body, CSS + _PAGE_CSS))
    return path
