// The login URL that `meingym-tasks web` prints on a terminal carries the token in the fragment
// (#token=...), which browsers never send to the server: fill it in, then drop it from the address bar.
(function () {
  "use strict";
  var match = /^#token=(.+)$/.exec(window.location.hash);
  var input = document.getElementById("token");
  if (match && input) {
    input.value = decodeURIComponent(match[1]);
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
    input.form.requestSubmit();
  } else if (input) {
    input.focus();
  }
})();
