"""The HTML shell shared by the report and the compare page: inline CSS and JS only, nothing fetched."""

from __future__ import annotations

from .svg import esc

_BUCKETS = "\n".join(
    f".p{k}{{background:rgba(198,40,40,{k / 10:.1f})}} .n{k}{{background:rgba(21,101,192,{k / 10:.1f})}}"
    + (f" .p{k},.n{k}{{color:#fff}}" if k >= 6 else "")
    for k in range(1, 11)
)

CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header.top{background:#263238;color:#eceff1;padding:10px 22px}
header.top h1{font-size:19px;margin:0 0 2px}
header.top .sub{font-size:12px;color:#b0bec5}
main{padding:14px 22px 40px;max-width:1500px}
h2{font-size:17px;margin:22px 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}
h3{font-size:15px;margin:16px 0 6px}
h4{font-size:13px;margin:12px 0 4px}
table{border-collapse:collapse;background:#fff}
th,td{border:1px solid #e0e0e0;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f4;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.small{font-size:12px}
.mono,pre,.tokens,code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{white-space:pre-wrap;word-break:break-word;background:#fff;border:1px solid #e0e0e0;padding:6px 8px;margin:4px 0;max-height:260px;overflow:auto;font-size:12.5px}
.badge{display:inline-block;border-radius:9px;padding:0 8px;font-size:12px;color:#fff;background:#607d8b}
.badge.attributed{background:#2e7d32}.badge.skipped{background:#ef6c00}.badge.error{background:#b71c1c}
.pat{display:inline-block;border-radius:4px;padding:0 6px;font-size:12px;color:#fff}
.chip{font-family:ui-monospace,Menlo,Consolas,monospace;border-radius:4px;padding:1px 6px;white-space:pre}
.chip.t{background:#ffebee;border:1px solid #c62828}.chip.c{background:#e3f2fd;border:1px solid #1565c0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:12px 22px;align-items:start}
.kv td:first-child{color:#555;white-space:nowrap}
.card{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:8px 12px;margin:8px 0}
.tokens{white-space:pre-wrap;word-break:break-word;background:#fff;border:1px solid #ddd;border-radius:4px;padding:8px 10px;line-height:1.85;font-size:13px;max-height:560px;overflow:auto}
.tokens>span,.tokens .gap span{border-radius:2px}
.tokens .sp{background:#d5d5d5;color:#555;outline:1px dashed #999}
.tokens .ans{border-bottom:2px dotted #333}
.tokens .pos{outline:2px solid #000}
.tokens .hit{outline:2px solid #f9a825;box-shadow:0 0 0 3px rgba(249,168,37,.45)}
.tokens .flash{animation:flash 1.4s ease-out 1}
@keyframes flash{0%{box-shadow:0 0 0 6px #ffd54f}100%{box-shadow:0 0 0 0 transparent}}
details.gap{display:inline}
details.gap>summary{display:inline;cursor:pointer;color:#666;background:#eceff1;border-radius:3px;padding:0 5px;font-style:italic;list-style:none}
details.gap>summary::-webkit-details-marker{display:none}
details.gap[open]>summary{background:#cfd8dc}
.legend{font-size:12px;margin:4px 0;display:flex;gap:8px;align-items:center;flex-wrap:wrap}
.legend .scale span{display:inline-block;width:16px}
.legend .sp{background:#d5d5d5;outline:1px dashed #999;padding:0 4px}
.legend .ans{border-bottom:2px dotted #333}.legend .pos{outline:2px solid #000;padding:0 3px}
.toolbar{display:flex;gap:8px;align-items:center;margin:6px 0;flex-wrap:wrap}
.toolbar input{padding:3px 6px;border:1px solid #bbb;border-radius:4px;min-width:220px}
button{padding:2px 9px;border:1px solid #999;border-radius:4px;background:#fff;cursor:pointer}
.jumps a{color:#222;font-family:ui-monospace,Menlo,Consolas,monospace;margin-right:6px;text-decoration:none;border-radius:3px;padding:0 4px;white-space:pre}
.jumps a.w{background:#ffebee}.jumps a.c{background:#e3f2fd}
.nav{font-size:13px;margin:4px 0 10px}.nav a{margin-right:14px}
.scroll{overflow:auto;max-width:100%;border:1px solid #eee;background:#fff}
svg.chart,svg.graph{font-family:system-ui,sans-serif;background:#fff}
svg .ttl{font-weight:600}
svg line.onpath{stroke:#f9a825;stroke-opacity:1}
.meta,.note{color:#555;font-size:12px}
.warn{background:#fff8e1;border:1px solid #ffca28;padding:6px 10px;border-radius:4px}
tr.rrow:hover{background:#f5f9ff}
section.rec{display:none}
section.rec:target{display:block}
body:has(section.rec:target) #index{display:none}
body.all section.rec{display:block}
""" + _BUCKETS

JS = r"""
(function(){
  function $(s,r){return (r||document).querySelector(s)}
  function $$(s,r){return Array.prototype.slice.call((r||document).querySelectorAll(s))}
  function reveal(el){var d=el.closest('details');while(d){d.open=true;d=d.parentElement&&d.parentElement.closest('details')}}
  function go(el){reveal(el);el.scrollIntoView({block:'center'});el.classList.remove('flash');void el.offsetWidth;el.classList.add('flash')}
  document.addEventListener('click',function(e){
    var a=e.target.closest('a.jump');
    if(a){var t=document.getElementById(a.getAttribute('data-target'));if(t){e.preventDefault();go(t)}return}
    var b=e.target.closest('button[data-act]');
    if(!b)return;
    var rec=b.closest('section.rec'),act=b.getAttribute('data-act');
    if(act==='expand'){$$('details.gap',rec).forEach(function(d){d.open=true})}
    if(act==='collapse'){$$('details.gap',rec).forEach(function(d){d.open=false})}
    if(act==='next'){var hits=$$('.tokens .hit',rec);if(!hits.length)return;var i=(+(rec.getAttribute('data-hit')||-1)+1)%hits.length;rec.setAttribute('data-hit',i);go(hits[i])}
    if(act==='all'){document.body.classList.toggle('all')}
  });
  document.addEventListener('input',function(e){
    var inp=e.target;
    if(inp.classList.contains('tsearch')){
      var rec=inp.closest('section.rec'),q=inp.value.toLowerCase(),n=0;
      rec.removeAttribute('data-hit');
      $$('.tokens span',rec).forEach(function(s){var hit=q&&s.textContent.toLowerCase().indexOf(q)>=0;s.classList.toggle('hit',!!hit);if(hit){n++;reveal(s)}});
      $('.count',rec).textContent=q?(n+' match'+(n===1?'':'es')):'';
    }
    if(inp.id==='filter'){
      var f=inp.value.toLowerCase();
      $$('tr.rrow').forEach(function(r){r.style.display=(!f||r.textContent.toLowerCase().indexOf(f)>=0)?'':'none'});
    }
  });
  function drawNodes(cv){
    if(cv.getAttribute('data-drawn'))return;cv.setAttribute('data-drawn','1');
    var rows=JSON.parse(cv.getAttribute('data-rows')),cols=JSON.parse(cv.getAttribute('data-cols')),labels=JSON.parse(cv.getAttribute('data-labels'));
    var v=cv.getAttribute('data-v').split(';').map(function(r){return r.split(',')});
    var cw=14,rh=rows.length>40?9:13,left=72,top=6,bottom=70;
    cv.width=left+cw*cols.length+10;cv.height=top+rh*rows.length+bottom;
    var g=cv.getContext('2d');g.font='10px sans-serif';g.textAlign='right';g.fillStyle='#fff';g.fillRect(0,0,cv.width,cv.height);
    for(var r=0;r<rows.length;r++){
      var y=top+rh*(rows.length-1-r);
      if(rows.length<=40||r%2===0){g.fillStyle='#333';g.fillText(rows[r],left-4,y+rh-2)}
      for(var c=0;c<cols.length;c++){
        var s=v[r][c];
        if(s==='s'){g.fillStyle='#d5d5d5'}else{var q=+s/99;g.fillStyle=q>=0?'rgba(198,40,40,'+q+')':'rgba(21,101,192,'+(-q)+')'}
        g.fillRect(left+cw*c,y,cw-1,rh-1);
      }
    }
    g.fillStyle='#333';
    for(var c=0;c<cols.length;c++){g.save();g.translate(left+cw*c+cw/2,top+rh*rows.length+6);g.rotate(-1.05);g.fillText(labels[c],0,0);g.restore()}
    cv.addEventListener('mousemove',function(e){
      var b=cv.getBoundingClientRect(),x=(e.clientX-b.left)*cv.width/b.width,y=(e.clientY-b.top)*cv.height/b.height;
      var c=Math.floor((x-left)/cw),r=rows.length-1-Math.floor((y-top)/rh);
      cv.title=(c>=0&&c<cols.length&&r>=0&&r<rows.length)?(rows[r]+' · #'+cols[c]+' '+labels[c]+' · '+(v[r][c]==='s'?'special':(v[r][c]/99).toFixed(2))):'';
    });
  }
  document.addEventListener('toggle',function(e){if(e.target.open){$$('canvas.nodes',e.target).forEach(drawNodes)}},true);
  window.addEventListener('hashchange',function(){if(location.hash.length>1&&document.getElementById(location.hash.slice(1))){window.scrollTo(0,0)}});
})();
"""


def page(title: str, subtitle: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; img-src data:\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<header class="top"><h1>{esc(title)}</h1><div class="sub">{esc(subtitle)}</div></header>'
        f"<main>{body}</main><script>{JS}</script></body></html>\n"
    )
