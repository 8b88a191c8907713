(function(){
// The record list, drawn as the page loads (a deferred draw measured no faster first screenshot, and a DOM read at
// the load event - headless Chromium's --dump-dom, a crawler - could miss the rows).
function init(){
  var data=JSON.parse(document.getElementById('rows').textContent);
  var D=data.dicts,rows=data.rows,PAGE=100,page=0,sortCol=-1,sortDir=1,text=null;
  var C={task:0,doc:1,status:2,delta:3,pattern:4,locator:5,segment:6,target:7,contrast:8,tokens:9,view:10,ratio:11,note:12,confidence:13,cases:14};
  var DICT={0:D.task,2:D.status,4:D.pattern,5:D.locator,6:D.segment,7:D.tok,8:D.tok,12:D.note,13:D.confidence};
  function e(s){return String(s==null?'':s).replace(/[&<>"']/g,function(c){return {'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]})}
  function v(id){var el=document.getElementById(id);return el?el.value:''}
  function num(x,d){return (x==null||x==='')?'–':(+x).toFixed(d)}
  function tokens(r){return r[C.tokens].map(function(i){return D.rep[i]}).join(' · ')}
  function val(r,c){if(c===C.tokens)return tokens(r);var d=DICT[c],x=r[c];return (d&&x!=null)?d[x]:x}
  function href(r){var i=r[C.view];if(i==null)return '';var p=String(Math.floor(i/D.chunk));while(p.length<4)p='0'+p;return D.dir+'/part_'+p+'.html#r'+i}
  function fill(id,list){var s=document.getElementById(id);if(!s)return;list.forEach(function(x,i){var o=document.createElement('option');o.value=i;o.textContent=x||'–';s.appendChild(o)})}
  fill('f-task',D.task);fill('f-status',D.status);fill('f-pattern',D.pattern);fill('f-locator',D.locator);fill('f-segment',D.segment);fill('f-confidence',D.confidence);
  function visible(){
    var t=v('f-task'),st=v('f-status'),p=v('f-pattern'),l=v('f-locator'),sg=v('f-segment'),cf=v('f-confidence'),q=v('f-token').toLowerCase(),lo=v('f-dmin'),hi=v('f-dmax');
    if(q&&!text)text=rows.map(function(r){return [tokens(r),val(r,C.target),val(r,C.contrast),val(r,C.note),r[C.doc]].join(' ').toLowerCase()});
    var out=rows.filter(function(r,i){
      if(t!==''&&r[C.task]!=+t)return false;if(st!==''&&r[C.status]!=+st)return false;
      if(p!==''&&r[C.pattern]!=+p)return false;if(l!==''&&r[C.locator]!=+l)return false;if(sg!==''&&r[C.segment]!=+sg)return false;if(cf!==''&&r[C.confidence]!=+cf)return false;
      if(lo!==''&&!(r[C.delta]!=null&&r[C.delta]>=+lo))return false;if(hi!==''&&!(r[C.delta]!=null&&r[C.delta]<=+hi))return false;
      if(q&&text[i].indexOf(q)<0)return false;
      return true});
    if(sortCol>=0){out.sort(function(a,b){var x=val(a,sortCol),y=val(b,sortCol);
      if(x==null)return 1;if(y==null)return -1;return (x<y?-1:x>y?1:0)*sortDir})}
    return out}
  function draw(){
    var vis=visible(),n=vis.length,pages=Math.max(1,Math.ceil(n/PAGE));if(page>=pages)page=pages-1;
    var html=vis.slice(page*PAGE,page*PAGE+PAGE).map(function(r){
      var st=D.status[r[C.status]],pat=D.pattern[r[C.pattern]];
      var h=href(r),doc=h?'<a class="open" href="'+e(h)+'">'+e(r[C.doc])+'</a>':e(r[C.doc]);
      return '<tr class="rrow"><td>'+e(D.task[r[C.task]])+'</td><td>'+doc+'</td>'+
        '<td><span class="badge '+e(st)+'">'+e(st)+'</span></td><td class=num>'+num(r[C.delta],3)+'</td>'+
        '<td>'+(pat?'<span class="pat" style="background:'+e(D.colours[pat]||'#999')+'">'+e(pat)+'</span>':'')+'</td>'+
        '<td>'+e(D.locator[r[C.locator]])+'</td><td>'+e(D.segment[r[C.segment]])+'</td>'+
        '<td><span class="chip t">'+e(val(r,C.target))+'</span></td><td><span class="chip c">'+e(val(r,C.contrast))+'</span></td>'+
        '<td class="mono">'+e(tokens(r))+'</td><td class=num>'+num(r[C.ratio],2)+'</td><td>'+e(D.confidence[r[C.confidence]])+'</td><td>'+e(D.note[r[C.note]])+'</td></tr>'}).join('');
    document.getElementById('rows-body').innerHTML=html;
    document.getElementById('rows-count').textContent=n+' of '+rows.length+' records · page '+(page+1)+' of '+pages;
  }
  document.addEventListener('input',function(ev){if(ev.target.closest('.filters')){page=0;draw()}});
  document.addEventListener('change',function(ev){if(ev.target.closest('.filters')){page=0;draw()}});
  document.addEventListener('click',function(ev){
    var th=ev.target.closest('table.rows th[data-col]');
    if(th){var c=+th.getAttribute('data-col');sortDir=(sortCol===c)?-sortDir:(c===C.delta||c===C.ratio?-1:1);sortCol=c;
      Array.prototype.forEach.call(document.querySelectorAll('table.rows th'),function(h){h.className=''});
      th.className=sortDir>0?'sorted-asc':'sorted-desc';draw();return}
    if(ev.target.closest('#export-cases')){
      var lines=visible().map(function(r){return r[C.cases]}).filter(function(x){return x}).map(function(x){return JSON.stringify(x)}).join('\n');
      var a=document.createElement('a');a.href=URL.createObjectURL(new Blob([lines+(lines?'\n':'')],{type:'application/jsonl'}));
      a.download='cases.jsonl';document.body.appendChild(a);a.click();a.remove();return}
    var b=ev.target.closest('button[data-page]');
    if(b){page=Math.max(0,page+(+b.getAttribute('data-page')));draw()}
  });
  // initial state from the address: report.html?status=skipped&task=arc_easy&token=Answer&sort=delta&desc=1
  var q=new URLSearchParams(location.search);
  ['task','status','pattern','locator','segment','confidence'].forEach(function(k){
    var want=q.get(k);if(want===null)return;var i=D[k].indexOf(want);var el=document.getElementById('f-'+k);if(el)el.value=i<0?'':String(i)});
  [['token','f-token'],['dmin','f-dmin'],['dmax','f-dmax']].forEach(function(kv){var v0=q.get(kv[0]);if(v0!==null)document.getElementById(kv[1]).value=v0});
  if(q.get('sort')&&C[q.get('sort')]!==undefined){sortCol=C[q.get('sort')];sortDir=q.get('desc')?-1:1}
  draw();
  if(window.performance&&performance.mark)performance.mark('lrp-rows-drawn');
}
init();
})();
