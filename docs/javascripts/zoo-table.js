// The model-zoo table: sorting by tablesort (vendored beside this file), filtering by the words typed in the box.
// Runs on every page load; mkdocs-material's `document$` also fires after instant navigation.
(function () {
  function setUp() {
    var table = document.getElementById("zoo-table");
    if (!table || table.dataset.ready) return;
    table.dataset.ready = "1";
    new Tablesort(table);
    var filter = document.getElementById("zoo-filter");
    if (!filter) return;
    filter.addEventListener("input", function () {
      var words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        var text = row.textContent.toLowerCase();
        row.hidden = !words.every(function (word) { return text.indexOf(word) !== -1; });
      });
    });
  }
  if (typeof document$ !== "undefined") {
    document$.subscribe(setUp);
  } else {
    document.addEventListener("DOMContentLoaded", setUp);
  }
})();
