// Live updates without a build step: every two seconds, fetch the grid and swap in the cards
// that changed (a playing clip is left alone).
(function () {
  var grid = document.getElementById("grid");
  if (!grid) return;
  var url = "/batches/" + grid.dataset.batch + "/grid";
  setInterval(function () {
    fetch(url, { credentials: "same-origin" }).then(function (r) { return r.ok ? r.text() : null; }).then(function (html) {
      if (html === null) return;
      var fresh = new DOMParser().parseFromString("<div>" + html + "</div>", "text/html").body.firstChild;
      fresh.querySelectorAll(".card").forEach(function (card) {
        var old = grid.querySelector('.card[data-key="' + card.dataset.key + '"]');
        if (!old) grid.appendChild(card);
        else if (old.dataset.v !== card.dataset.v) old.replaceWith(card);
      });
    });
  }, 2000);
})();
