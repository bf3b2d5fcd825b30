// The console's only script besides htmx: a "select all" box for the fleet table.
document.addEventListener("change", function (event) {
  var box = event.target;
  if (!box.matches || !box.matches("input[data-select-all]")) return;
  var form = box.closest("form");
  form.querySelectorAll('input[type=checkbox][name="' + box.dataset.selectAll + '"]').forEach(function (item) {
    item.checked = box.checked;
  });
});
