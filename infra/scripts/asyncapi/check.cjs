// Validates an AsyncAPI document with the AsyncAPI initiative's own parser (@asyncapi/parser,
// from npm, pinned by package-lock.json beside this file; NODE_PATH points at its
// node_modules): node check.cjs <document.json>
// Exits 1 on any error diagnostic, printing every diagnostic.
const fs = require('node:fs');
const { Parser } = require('@asyncapi/parser');

const SEVERITY = ['error', 'warning', 'information', 'hint'];

(async () => {
  const path = process.argv[2];
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(fs.readFileSync(path, 'utf8'));
  for (const d of diagnostics) {
    console.error(`${SEVERITY[d.severity] || d.severity}: ${d.message} (${d.code}) at ${(d.path || []).join('.')}`);
  }
  const errors = diagnostics.filter((d) => d.severity === 0);
  if (!document || errors.length > 0) {
    console.error(`${path}: ${errors.length} error(s)`);
    process.exit(1);
  }
  console.log(`${path}: valid AsyncAPI ${document.version()}, ${document.channels().length} channels, ${document.messages().length} messages`);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
