// Starts the packaged Swagger UI (no CDN, no inline script). Requests made with the dashboard's
// session cookie carry its CSRF token; with "Authorize" (Bearer token) the cookie is not needed.
(function () {
  "use strict";
  var body = document.body;
  var csrf = body.getAttribute("data-csrf");
  window.ui = window.SwaggerUIBundle({
    url: body.getAttribute("data-openapi"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null,
    tryItOutEnabled: false,
    requestInterceptor: function (request) {
      if (csrf) request.headers["X-CSRF-Token"] = csrf;
      return request;
    }
  });
})();
