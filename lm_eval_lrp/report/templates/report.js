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
