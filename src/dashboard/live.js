// Live updates without a build step: every two seconds, fetch the page of the grid this page
// shows and swap in the cards that changed (a playing clip is left alone); cards no longer on
// this page (subjects added before them) leave it.
(function () {
  var grid = document.getElementById("grid");
  if (!grid) return;
  var url = "/batches/" + grid.dataset.batch + "/grid?page=" + (grid.dataset.page || "1");
  setInterval(function () {
    fetch(url, { credentials: "same-origin" }).then(function (r) { return r.ok ? r.text() : null; }).then(function (html) {
      if (html === null) return;
      var fresh = new DOMParser().parseFromString("<div>" + html + "</div>", "text/html").body.firstChild;
      var keep = {};
      fresh.querySelectorAll(".card").forEach(function (card) {
        keep[card.dataset.key] = true;
        var old = grid.querySelector('.card[data-key="' + card.dataset.key + '"]');
        if (!old) grid.appendChild(card);
        else if (old.dataset.v !== card.dataset.v) old.replaceWith(card);
      });
      grid.querySelectorAll(".card").forEach(function (card) {
        if (!keep[card.dataset.key]) card.remove();
      });
    });
  }, 2000);
})();
