'use strict';
// ES module syntax and TypeScript for the JavaScript driver (node_driver.js requires this file).
//
// A vm script can't hold `import` declarations, and before Node 21 its `import()` needs
// --experimental-vm-modules. So cells are rewritten, as Node's REPL does: a static import becomes
// an awaited dynamic import bound with `const` (which the driver then keeps across runs),
// `export` keywords are dropped, and every `import(...)` calls a function of the driver's that
// resolves the specifier from the working directory and imports it in the main context.
// TypeScript is type-stripped by the `typescript` package's transpileModule (no type checking).
// Node >= 12 compatible: no optional chaining, no nullish coalescing, no class fields.

const fs = require('fs');
const path = require('path');
const url = require('url');
const Module = require('module');

const IMPORT_FN = '__corralImport';
const DECLARATION_WORDS = ['const', 'let', 'var', 'function', 'class', 'async', 'enum'];

// ------------------------------------------------------------------ rewriting module syntax

// Index just past the statement that starts at token k (its `;` included).
function statementEnd(tokens, k) {
  let j = k + 1;
  while (j < tokens.length && !tokens[j].starts) {
    if (tokens[j].depth === 0 && tokens[j].type === 'punct' && tokens[j].value === ';') return j + 1;
    j += 1;
  }
  return j;
}

// `import a, {b as c} from 'x'` -> `const {default: a, b: c} = await __corralImport('x');`
function importDeclaration(tokens, k, lex) {
  const isPunct = lex.isPunct;
  let j = k + 1;
  // The declaration ends after its specifier, an import attributes clause and a `;`.
  const replace = function (text, specifier) {
    let last = specifier;
    const clause = tokens[last + 1];
    if (clause && (clause.value === 'assert' || clause.value === 'with') && !clause.newline && isPunct(tokens[last + 2], '{')) {
      last = lex.matching(tokens, last + 2);
    }
    if (isPunct(tokens[last + 1], ';')) last += 1;
    return { at: tokens[k].start, end: tokens[last].end, text: text };
  };
  if (tokens[j].type === 'str') return replace('await ' + IMPORT_FN + '(' + tokens[j].value + ');', j);
  let defaultName = null;
  let namespace = null;
  const props = [];
  if (tokens[j].type === 'name' && tokens[j].value !== 'from') {
    defaultName = tokens[j].value;
    j += 1;
    if (isPunct(tokens[j], ',')) j += 1;
  }
  if (isPunct(tokens[j], '*')) {
    if (!tokens[j + 1] || tokens[j + 1].value !== 'as' || !tokens[j + 2]) return null;
    namespace = tokens[j + 2].value;
    j += 3;
  } else if (isPunct(tokens[j], '{')) {
    const close = lex.matching(tokens, j);
    let i = j + 1;
    while (i < close) {
      if (isPunct(tokens[i], ',')) { i += 1; continue; }
      const imported = tokens[i].value;
      let local = imported;
      if (tokens[i + 1] && tokens[i + 1].value === 'as' && i + 2 < close) { local = tokens[i + 2].value; i += 3; } else i += 1;
      props.push(imported === local ? local : imported + ': ' + local);
    }
    j = close + 1;
  }
  if (!tokens[j] || tokens[j].value !== 'from' || !tokens[j + 1] || tokens[j + 1].type !== 'str') return null;
  const load = 'await ' + IMPORT_FN + '(' + tokens[j + 1].value + ')';
  if (namespace) {
    return replace('const ' + namespace + ' = ' + load + ';' + (defaultName ? ' const ' + defaultName + ' = ' + namespace + '.default;' : ''), j + 1);
  }
  if (defaultName) props.unshift('default: ' + defaultName);
  return replace('const {' + props.join(', ') + '} = ' + load + ';', j + 1);
}

function exportEdit(tokens, k, lex) {
  const next = tokens[k + 1];
  if (lex.isPunct(next, '{') || lex.isPunct(next, '*')) {
    return { at: tokens[k].start, end: tokens[statementEnd(tokens, k) - 1].end, text: '' };
  }
  if (next.type !== 'name') return null;
  if (next.value === 'default') return { at: tokens[k].start, end: next.end, text: '' };
  if (DECLARATION_WORDS.indexOf(next.value) >= 0) return { at: tokens[k].start, end: next.start, text: '' };
  return null;
}

// lex: the driver's tokenizer and helpers {tokenize, isPunct, matching, applyEdits, LexError}.
function rewriteModuleSyntax(src, lex) {
  if (!/\b(import|export)\b/.test(src)) return src;
  let tokens;
  try { tokens = lex.tokenize(src); } catch (err) { if (err instanceof lex.LexError) return src; throw err; }
  const edits = [];
  tokens.forEach(function (token, k) {
    if (token.type !== 'name') return;
    const next = tokens[k + 1];
    const prev = tokens[k - 1];
    if (!next || (prev && (lex.isPunct(prev, '.') || lex.isPunct(prev, '?.')))) return;
    let edit = null;
    if (token.value === 'import' && lex.isPunct(next, '(')) edit = { at: token.start, end: token.end, text: IMPORT_FN };
    else if (token.value === 'import' && token.starts && !lex.isPunct(next, '.')) edit = importDeclaration(tokens, k, lex);
    else if (token.value === 'export' && token.starts) edit = exportEdit(tokens, k, lex);
    if (edit) edits.push(edit);
  });
  return edits.length ? lex.applyEdits(src, edits) : src;
}

// ------------------------------------------------------------------ resolving what cells import

function cwdRequire() {
  const anchor = path.join(process.cwd(), '[cell]');
  if (typeof Module.createRequire === 'function') return Module.createRequire(anchor);
  if (typeof Module.createRequireFromPath === 'function') return Module.createRequireFromPath(anchor);
  return require;
}

function exportTarget(spec) {
  if (typeof spec === 'string') return spec;
  if (Array.isArray(spec)) {
    for (const item of spec) { const found = exportTarget(item); if (found) return found; }
    return null;
  }
  if (!spec || typeof spec !== 'object') return null;
  if (Object.prototype.hasOwnProperty.call(spec, '.')) return exportTarget(spec['.']);
  for (const condition of ['import', 'node', 'default']) {
    if (Object.prototype.hasOwnProperty.call(spec, condition)) {
      const found = exportTarget(spec[condition]);
      if (found) return found;
    }
  }
  return null;
}

// The entry file of an ESM-only package that require.resolve refuses (no "require" export).
function packageEntry(specifier) {
  const parts = specifier.split('/');
  const name = specifier[0] === '@' ? parts.slice(0, 2).join('/') : parts[0];
  const dirs = [];
  for (let dir = process.cwd(); ; dir = path.dirname(dir)) {
    dirs.push(path.join(dir, 'node_modules'));
    if (path.dirname(dir) === dir) break;
  }
  for (const base of dirs.concat(Module.globalPaths || [])) {
    const root = path.join(base, name);
    let manifest;
    try { manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')); } catch (err) { continue; }
    if (specifier !== name) return path.join(base, specifier);
    return path.join(root, exportTarget(manifest.exports) || manifest.module || manifest.main || 'index.js');
  }
  return null;
}

function resolveSpecifier(specifier) {
  if (/^(node:|data:|file:)/.test(specifier) || (Module.builtinModules || []).indexOf(specifier) >= 0) return specifier;
  if (/^\.{0,2}\//.test(specifier)) return url.pathToFileURL(path.resolve(process.cwd(), specifier)).href;
  try {
    return url.pathToFileURL(cwdRequire().resolve(specifier)).href;
  } catch (err) {
    const entry = packageEntry(specifier);
    return entry ? url.pathToFileURL(entry).href : specifier; // Node then reports it as not found
  }
}

function importFromCell(specifier) {
  return import(resolveSpecifier(String(specifier))).catch(function (err) {
    if (err && err.code === 'ERR_MODULE_NOT_FOUND') {
      // Node names this file as the importer; the cell's working directory is what matters.
      const where = ' (looked up from ' + process.cwd() + ')';
      err.message = String(err.message).replace(/ imported from \S+$/, where);
      if (typeof err.stack === 'string') err.stack = err.stack.replace(/ imported from \S+/, where);
    }
    throw err;
  });
}

// ------------------------------------------------------------------ TypeScript

let compiler = null;

function loadTypeScript() {
  if (compiler) return compiler;
  const places = [cwdRequire(), require];
  const prefix = process.env.NPM_CONFIG_PREFIX || process.env.npm_config_prefix;
  if (prefix) places.push(Module.createRequire(path.join(prefix, 'lib', 'node_modules', '[global]')));
  for (const load of places) {
    try {
      compiler = load('typescript');
      return compiler;
    } catch (err) {
      if (err.code !== 'MODULE_NOT_FOUND') throw err;
    }
  }
  const err = new Error("TypeScript cells need the 'typescript' package, which is not installed here; "
    + 'install it with `npm install -g typescript` (or `npm install typescript` in the working directory)');
  err.name = 'TypeScriptMissing';
  throw err;
}

// Type-stripped JavaScript of a TypeScript cell; a syntax error is thrown as a SyntaxError.
function transpileTypeScript(src) {
  const ts = loadTypeScript();
  const options = {
    target: ts.ScriptTarget.ES2022 || ts.ScriptTarget.Latest,
    module: ts.ModuleKind.ESNext,
    isolatedModules: true,
    esModuleInterop: true,
    sourceMap: false,
    inlineSourceMap: false,
  };
  // Imports stay as written even when only types seem to use them: a later cell may need them.
  if (parseInt(ts.versionMajorMinor, 10) >= 5) options.verbatimModuleSyntax = true;
  else options.preserveValueImports = true;
  const out = ts.transpileModule(src, { compilerOptions: options, reportDiagnostics: true, fileName: 'cell.ts' });
  const errors = (out.diagnostics || []).filter(function (d) { return d.file && d.category === ts.DiagnosticCategory.Error; });
  if (errors.length) {
    const first = errors[0];
    const where = first.file.getLineAndCharacterOfPosition(first.start || 0);
    const err = new SyntaxError(ts.flattenDiagnosticMessageText(first.messageText, '\n')
      + ' (TS' + first.code + ', line ' + (where.line + 1) + ')');
    err.stack = 'SyntaxError: ' + err.message;
    throw err;
  }
  return out.outputText.replace(/\n\/\/# sourceMappingURL=.*\s*$/, '\n');
}

module.exports = {
  IMPORT_FN: IMPORT_FN,
  importFromCell: importFromCell,
  rewriteModuleSyntax: rewriteModuleSyntax,
  transpileTypeScript: transpileTypeScript,
};
