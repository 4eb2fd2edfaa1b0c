// Typeset math with the site's own KaTeX (see docs/hooks/katex_hook.py).
// Markdown pages: pymdownx.arithmatex (generic) wraps math in .arithmatex as \( \) and \[ \].
// Notebook pages (mkdocs-jupyter): markdown cells and outputs keep $...$ and $$...$$.
(function () {
  "use strict";
  var ARITHMATEX = [
    { left: "\\[", right: "\\]", display: true },
    { left: "\\(", right: "\\)", display: false },
  ];
  var NOTEBOOK = [
    { left: "$$", right: "$$", display: true },
    { left: "\\[", right: "\\]", display: true },
    { left: "$", right: "$", display: false },
    { left: "\\(", right: "\\)", display: false },
  ];

  function typeset(root) {
    if (typeof renderMathInElement !== "function") {
      return;
    }
    root.querySelectorAll(".arithmatex").forEach(function (el) {
      renderMathInElement(el, { delimiters: ARITHMATEX, throwOnError: false });
    });
    root.querySelectorAll(".jupyter-wrapper .jp-RenderedMarkdown, .jupyter-wrapper .jp-RenderedLatex")
      .forEach(function (el) {
        renderMathInElement(el, { delimiters: NOTEBOOK, throwOnError: false });
      });
  }

  if (typeof document$ !== "undefined") {
    document$.subscribe(function () { typeset(document); });
  } else {
    document.addEventListener("DOMContentLoaded", function () { typeset(document); });
  }
})();
