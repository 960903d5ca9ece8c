// Starts Swagger UI on this shop's own document (a file, not an inline script, so that a
// content security policy of 'self' lets it run).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#api", deepLinking: true });
});
