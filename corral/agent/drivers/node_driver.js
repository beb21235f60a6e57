'use strict';
// Corral JavaScript interpreter driver: one persistent vm context, notebook-style runs.
//
// Contract (see README.md next to this file): stdin is /dev/null, user output goes to
// stdout/stderr, requests arrive as JSON lines on fd 3 and replies leave as JSON lines on fd 4.
// Node >= 12 compatible: no optional chaining, no nullish coalescing, no class fields.

const fs = require('fs');
const net = require('net');
const path = require('path');
const util = require('util');
const vm = require('vm');
const Module = require('module');
const esm = require('./node_esm.js');

const CTL_IN_FD = 3;
const CTL_OUT_FD = 4;
const MAX_TEXT_CHARS = 64 * 1024;
const CELL_PREFIX = '<cell-';
// node_driver.js [javascript|typescript]: TypeScript cells are type-stripped first.
const LANGUAGE = process.argv[2] === 'typescript' ? 'typescript' : 'javascript';

// ------------------------------------------------------------------ text helpers

function capText(text) {
  if (text.length <= MAX_TEXT_CHARS) return text;
  const half = MAX_TEXT_CHARS / 2;
  const dropped = text.length - 2 * half;
  return text.slice(0, half) + '\n... [' + dropped + ' characters truncated] ...\n' + text.slice(-half);
}

function inspect(value) {
  return capText(util.inspect(value, { maxStringLength: MAX_TEXT_CHARS }));
}

// ------------------------------------------------------------------ tokenizer
// Just enough lexing to find top-level statements and declarations without a parser: strings,
// templates, comments and regex literals are skipped as single tokens so brackets inside them
// never count. Anything it can't lex makes the caller fall back to running the code untouched.

const PUNCTUATORS = ['>>>=', '...', '===', '!==', '**=', '<<=', '>>=', '>>>', '&&=', '||=', '??=',
  '=>', '==', '!=', '<=', '>=', '&&', '||', '??', '?.', '++', '--', '+=', '-=', '*=', '/=', '%=',
  '&=', '|=', '^=', '**', '<<', '>>'];
// After these words an operand follows, so a `/` there starts a regex and a newline can't end a
// statement.
const OPERATOR_WORDS = new Set(['typeof', 'instanceof', 'in', 'of', 'new', 'delete', 'void', 'throw',
  'case', 'do', 'else', 'yield', 'await', 'extends', 'return']);
const NUMBER_RE = /(?:0[xXoObB][0-9a-fA-F_]+n?|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?n?)/y;
const LINE_BREAK_RE = /[\n\r\u2028\u2029]/;

class LexError extends Error {}

function isIdentStart(ch) {
  return /[A-Za-z_$#\\]/.test(ch) || ch.charCodeAt(0) >= 0x80;
}

function isIdentPart(ch) {
  return /[\w$\\]/.test(ch) || ch.charCodeAt(0) >= 0x80;
}

function skipQuoted(src, i) {
  const quote = src[i];
  for (i += 1; i < src.length; i += 1) {
    if (src[i] === '\\') i += 1;
    else if (src[i] === quote) return i + 1;
    else if (src[i] === '\n' || src[i] === '\r') break;
  }
  throw new LexError('unterminated string');
}

function skipTemplate(src, i) {
  for (i += 1; i < src.length; i += 1) {
    if (src[i] === '\\') i += 1;
    else if (src[i] === '`') return i + 1;
    else if (src[i] === '$' && src[i + 1] === '{') i = scan(src, i + 2, true).end;
  }
  throw new LexError('unterminated template');
}

function skipRegex(src, i) {
  let inClass = false;
  for (i += 1; i < src.length; i += 1) {
    const ch = src[i];
    if (ch === '\\') i += 1;
    else if (LINE_BREAK_RE.test(ch)) break;
    else if (ch === '[') inClass = true;
    else if (ch === ']') inClass = false;
    else if (ch === '/' && !inClass) {
      i += 1;
      while (i < src.length && /[A-Za-z]/.test(src[i])) i += 1;
      return i;
    }
  }
  throw new LexError('unterminated regex');
}

function regexAllowed(prev) {
  if (!prev) return true;
  if (prev.type === 'name') return OPERATOR_WORDS.has(prev.value);
  if (prev.type !== 'punct') return false;
  return [')', ']', '}', '++', '--'].indexOf(prev.value) < 0;
}

function lexToken(src, i, prev) {
  const ch = src[i];
  if (ch === '"' || ch === "'") return ['str', skipQuoted(src, i)];
  if (ch === '`') return ['tmpl', skipTemplate(src, i)];
  if (isIdentStart(ch)) {
    let end = i + 1;
    while (end < src.length && isIdentPart(src[end])) end += 1;
    return ['name', end];
  }
  if (/\d/.test(ch) || (ch === '.' && /\d/.test(src[i + 1] || ''))) {
    NUMBER_RE.lastIndex = i;
    const match = NUMBER_RE.exec(src);
    return ['num', i + Math.max(1, match ? match[0].length : 1)];
  }
  if (ch === '/' && regexAllowed(prev)) return ['regex', skipRegex(src, i)];
  for (const punct of PUNCTUATORS) if (src.startsWith(punct, i)) return ['punct', i + punct.length];
  return ['punct', i + 1];
}

// Tokens from i on; with untilBrace, stops at the `}` closing a template's `${`.
function scan(src, i, untilBrace) {
  const tokens = [];
  let braces = 0;
  let newline = false;
  if (i === 0 && src.startsWith('#!')) i = src.indexOf('\n') < 0 ? src.length : src.indexOf('\n');
  while (i < src.length) {
    const ch = src[i];
    if (LINE_BREAK_RE.test(ch)) { newline = true; i += 1; continue; }
    if (/\s/.test(ch)) { i += 1; continue; }
    if (ch === '/' && src[i + 1] === '/') {
      while (i < src.length && !LINE_BREAK_RE.test(src[i])) i += 1;
      continue;
    }
    if (ch === '/' && src[i + 1] === '*') {
      const end = src.indexOf('*/', i + 2);
      if (end < 0) throw new LexError('unterminated comment');
      if (LINE_BREAK_RE.test(src.slice(i, end))) newline = true;
      i = end + 2;
      continue;
    }
    if (untilBrace && ch === '}' && braces === 0) return { tokens: tokens, end: i };
    const lexed = lexToken(src, i, tokens[tokens.length - 1]);
    const token = { type: lexed[0], value: src.slice(i, lexed[1]), start: i, end: lexed[1], newline: newline };
    if (token.type === 'punct' && token.value === '{') braces += 1;
    if (token.type === 'punct' && token.value === '}') braces -= 1;
    tokens.push(token);
    newline = false;
    i = lexed[1];
  }
  if (untilBrace) throw new LexError('unterminated template expression');
  return { tokens: tokens, end: i };
}

const OPENERS = new Set(['(', '[', '{']);
const CLOSERS = new Set([')', ']', '}']);

// Tokens annotated with their bracket depth and whether they begin a top-level statement.
function tokenize(src) {
  const tokens = scan(src, 0, false).tokens;
  let depth = 0;
  for (const token of tokens) {
    const punct = token.type === 'punct';
    if (punct && CLOSERS.has(token.value)) depth -= 1;
    if (depth < 0) throw new LexError('unbalanced brackets');
    token.depth = depth;
    if (punct && OPENERS.has(token.value)) depth += 1;
  }
  tokens.forEach(function (token, k) { token.starts = startsStatement(tokens, k); });
  return tokens;
}

function endsOperand(token) {
  if (token.type === 'punct') return [')', ']', '}', '++', '--'].indexOf(token.value) >= 0;
  return !(token.type === 'name' && OPERATOR_WORDS.has(token.value) && token.value !== 'return');
}

function continuesOperand(token) {
  if (token.type === 'tmpl') return true;
  if (token.type === 'name') return token.value === 'in' || token.value === 'instanceof';
  return token.type === 'punct' && ['{', '!', '~', '++', '--', ';'].indexOf(token.value) < 0;
}

// An approximation of ASI, good for the code people type into a notebook cell.
function startsStatement(tokens, k) {
  const token = tokens[k];
  if (token.depth !== 0) return false;
  if (k === 0) return true;
  const prev = tokens[k - 1];
  if (prev.type === 'punct' && prev.value === ';') return true;
  if (prev.type === 'punct' && prev.value === '}' && prev.depth === 0) return !continuesOperand(token);
  return token.newline && endsOperand(prev) && !continuesOperand(token);
}

function isPunct(token, value) {
  return Boolean(token) && token.type === 'punct' && token.value === value;
}

function matching(tokens, k) {
  for (let j = k + 1; j < tokens.length; j += 1) {
    if (tokens[j].depth === tokens[k].depth && CLOSERS.has(tokens[j].value) && tokens[j].type === 'punct') {
      return j;
    }
  }
  throw new LexError('unbalanced brackets');
}

// ------------------------------------------------------------------ declarations

// The kind of top-level declaration token k begins, if any.
function declarationKind(tokens, k) {
  const token = tokens[k];
  const next = tokens[k + 1];
  if (!token.starts || token.type !== 'name' || !next) return null;
  if (token.value === 'const' || token.value === 'var') return token.value;
  if (token.value === 'let') {
    const binds = (next.type === 'name' && !OPERATOR_WORDS.has(next.value)) || isPunct(next, '[') || isPunct(next, '{');
    return binds ? 'let' : null;
  }
  if (token.value === 'class' && next.type === 'name' && next.value !== 'extends') return 'class';
  if (token.value === 'function') return 'function';
  if (token.value === 'async' && next.value === 'function' && !next.newline) return 'function';
  return null;
}

function functionName(tokens, k) {
  let j = tokens[k].value === 'async' ? k + 2 : k + 1;
  if (isPunct(tokens[j], '*')) j += 1;
  return tokens[j] && tokens[j].type === 'name' ? tokens[j].value : null;
}

// Index of the `}` ending the class whose keyword is token k.
function classBodyEnd(tokens, k) {
  for (let j = k + 1; j < tokens.length; j += 1) {
    if (tokens[j].depth === 0 && isPunct(tokens[j], '{')) return matching(tokens, j);
  }
  throw new LexError('class without a body');
}

// Names bound by the destructuring pattern tokens[open..close].
function patternNames(tokens, open, close, names) {
  const isObject = tokens[open].value === '{';
  let j = open + 1;
  while (j < close) {
    if (isPunct(tokens[j], ',')) { j += 1; continue; }
    let target = j;
    if (isPunct(tokens[j], '...')) target = j + 1;
    else if (isObject) {
      let keyEnd = j;
      if (isPunct(tokens[j], '[')) keyEnd = matching(tokens, j);
      target = isPunct(tokens[keyEnd + 1], ':') ? keyEnd + 2 : j;
    }
    j = bindTarget(tokens, target, names);
    j = skipExpression(tokens, j, tokens[open].depth + 1);
  }
}

// Records the names bound at tokens[j] (a name or a nested pattern); returns the index after it.
function bindTarget(tokens, j, names) {
  const token = tokens[j];
  if (token && token.type === 'name') { names.push(token.value); return j + 1; }
  if (isPunct(token, '[') || isPunct(token, '{')) {
    const close = matching(tokens, j);
    patternNames(tokens, j, close, names);
    return close + 1;
  }
  throw new LexError('unsupported binding');
}

// Skips to the `,` at this depth, a closing bracket, or the next top-level statement.
function skipExpression(tokens, j, depth) {
  while (j < tokens.length) {
    const token = tokens[j];
    if (token.depth < depth || (token.depth === depth && isPunct(token, ','))) return j;
    if (depth === 0 && (token.starts || isPunct(token, ';'))) return j;
    j += 1;
  }
  return j;
}

// Declarators of the var/let/const at token k: [{first, last, hasInit}] plus the bound names.
function declarators(tokens, k, names) {
  const list = [];
  let j = k + 1;
  for (;;) {
    const first = j;
    j = bindTarget(tokens, j, names);
    const hasInit = isPunct(tokens[j], '=') && tokens[j].depth === 0;
    if (hasInit) j = skipExpression(tokens, j + 1, 0);
    list.push({ first: first, last: j - 1, hasInit: hasInit });
    if (!(isPunct(tokens[j], ',') && tokens[j].depth === 0)) return list;
    j += 1;
  }
}

// ------------------------------------------------------------------ source rewriting

function applyEdits(src, edits) {
  const ordered = edits.map(function (edit, n) { return [edit, n]; })
    .sort(function (a, b) { return a[0].at - b[0].at || a[1] - b[1]; });
  let out = '';
  let cursor = 0;
  for (const pair of ordered) {
    const edit = pair[0];
    out += src.slice(cursor, edit.at) + edit.text;
    cursor = edit.end === undefined ? edit.at : edit.end;
  }
  return out + src.slice(cursor);
}

function hoist(names) {
  const unique = names.filter(function (name, n) { return names.indexOf(name) === n; });
  return unique.length ? '\n;var ' + unique.join(', ') + ';' : '';
}

// Synchronous cells: top-level let/const/class become var-like globals, so they persist and can
// be declared again by a later run (a re-run cell must not fail with "already declared").
function rewriteSync(src, tokens) {
  const edits = [];
  const names = [];
  tokens.forEach(function (token, k) {
    const kind = declarationKind(tokens, k);
    if (kind === 'let' || kind === 'const') edits.push({ at: token.start, end: token.end, text: 'var' });
    if (kind === 'class') {
      edits.push({ at: token.start, text: 'var ' + tokens[k + 1].value + ' = ' });
      edits.push({ at: tokens[classBodyEnd(tokens, k)].end, text: ';' });
    }
  });
  return applyEdits(src, edits);
}

// Cells with top-level await run as an async function. Declarations are turned into assignments
// to globals declared outside it, function declarations are exported from it, and the last
// expression statement is returned (the same approach as Node's REPL, minus the parser).
function rewriteAsync(src, tokens, returnLast) {
  const edits = [];
  const names = [];
  const exported = [];
  tokens.forEach(function (token, k) {
    const kind = declarationKind(tokens, k);
    if (kind === 'class') {
      names.push(tokens[k + 1].value);
      edits.push({ at: token.start, text: tokens[k + 1].value + ' = ' });
      edits.push({ at: tokens[classBodyEnd(tokens, k)].end, text: ';' });
    } else if (kind === 'function') {
      const name = functionName(tokens, k);
      if (name) exported.push('this.' + name + ' = ' + name + ';');
    } else if (kind) variableEdits(tokens, k, kind, edits, names);
  });
  if (returnLast) returnEdits(src, tokens, edits);
  const prefix = '(async () => {' + exported.join(' ');
  return { source: prefix + applyEdits(src, edits) + '\n})()' + hoist(names), prefixLength: prefix.length };
}

function variableEdits(tokens, k, kind, edits, names) {
  const list = declarators(tokens, k, names);
  edits.push({ at: tokens[k].start, end: tokens[k].end, text: 'void (' });
  list.forEach(function (decl, n) {
    edits.push({ at: tokens[decl.first].start, text: '(' });
    const reset = decl.hasInit || kind === 'var' ? '' : '=undefined';
    edits.push({ at: tokens[decl.last].end, text: reset + ')' + (n === list.length - 1 ? ')' : '') });
  });
}

const STATEMENT_WORDS = new Set(['if', 'for', 'while', 'do', 'switch', 'try', 'return', 'throw', 'break',
  'continue', 'var', 'let', 'const', 'function', 'class', 'import', 'export', 'debugger', 'with',
  'else', 'catch', 'finally', 'case', 'default']);

function returnEdits(src, tokens, edits) {
  let k = tokens.length - 1;
  while (k >= 0 && !tokens[k].starts) k -= 1;
  if (k < 0 || declarationKind(tokens, k)) return;
  const first = tokens[k];
  if ((first.type === 'name' && STATEMENT_WORDS.has(first.value)) || isPunct(first, '{') || isPunct(first, ';')) return;
  edits.push({ at: first.start, text: 'return (' });
  const last = tokens[tokens.length - 1];
  if (isPunct(last, ';') && last.depth === 0 && tokens.length - 1 > k) edits.push({ at: last.start, text: ')' });
  else edits.push({ at: src.length, text: '\n)' });
}

// ------------------------------------------------------------------ compiling

function compile(source, filename, columnOffset) {
  return new vm.Script(source, { filename: filename, columnOffset: columnOffset || 0 });
}

function attempt(build, filename) {
  try {
    const built = build();
    return { script: compile(built.source, filename, -built.prefixLength), error: null };
  } catch (err) {
    return { script: null, error: err };
  }
}

// The compiled cell and whether its completion value is a promise to await. Rewrites are tried
// first; if one does not compile, the code runs as written (native vm semantics).
function prepare(src, filename) {
  let tokens = null;
  try { tokens = tokenize(src); } catch (err) { if (!(err instanceof LexError)) throw err; }
  const awaits = /\bawait\b/.test(src);
  const plainAsync = '(async () => {';
  // [build, is async, whether its error is the one to report when nothing compiles]
  const candidates = [
    [function () { return { source: rewriteSync(src, tokens), prefixLength: 0 }; }, false, false, Boolean(tokens)],
    [function () { return { source: src, prefixLength: 0 }; }, false, !awaits, true],
    [function () { return rewriteAsync(src, tokens, true); }, true, false, awaits && Boolean(tokens)],
    [function () { return rewriteAsync(src, tokens, false); }, true, false, awaits && Boolean(tokens)],
    [function () { return { source: plainAsync + src + '\n})()', prefixLength: plainAsync.length }; }, true, true, awaits],
  ];
  let reported = null;
  for (const candidate of candidates) {
    if (!candidate[3]) continue;
    const result = attempt(candidate[0], filename);
    if (result.script) return { script: result.script, isAsync: candidate[1] };
    if (candidate[2]) reported = result.error;
  }
  throw reported;
}

// ------------------------------------------------------------------ errors

function isInterrupt(err) {
  return Boolean(err) && err.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED';
}

function interruptedError() {
  const err = new Error('Script execution interrupted.');
  err.code = 'ERR_SCRIPT_EXECUTION_INTERRUPTED';
  return err;
}

// Frames after the outermost cell frame belong to the driver and Node's internals, and so does a
// "file:line / source / ^" header that points into the driver.
function cleanStack(stack) {
  let lines = stack.split('\n');
  const blank = lines.indexOf('');
  if (/:\d+$/.test(lines[0]) && lines[0].indexOf(CELL_PREFIX) !== 0 && blank > 0) lines = lines.slice(blank + 1);
  const isFrame = function (line) { return /^\s+at /.test(line); };
  let lastCell = -1;
  lines.forEach(function (line, n) { if (isFrame(line) && line.indexOf(CELL_PREFIX) >= 0) lastCell = n; });
  return lines.filter(function (line, n) {
    if (!isFrame(line)) return true;
    if (line.indexOf(__filename) >= 0 || (lastCell >= 0 && n > lastCell)) return false;
    return lastCell >= 0 || !/\(node:|\(internal\/|at node:/.test(line);
  }).join('\n').replace(/\s+$/, '');
}

function describeError(err) {
  if (isInterrupt(err)) {
    return { ename: 'Interrupted', evalue: 'Script execution interrupted.', traceback: 'Interrupted: Script execution interrupted.' };
  }
  try {
    if (err && typeof err === 'object' && typeof err.stack === 'string') {
      return { ename: String(err.name || 'Error'), evalue: capText(String(err.message)), traceback: capText(cleanStack(err.stack)) };
    }
  } catch (ignored) {
    // A hostile getter on the thrown object: describe it by inspection instead.
  }
  const shown = inspect(err);
  return { ename: 'Uncaught', evalue: shown, traceback: 'Uncaught ' + shown };
}

// ------------------------------------------------------------------ the context

function makeRequire() {
  const anchor = path.join(process.cwd(), '[cell]');
  if (typeof Module.createRequire === 'function') return Module.createRequire(anchor);
  if (typeof Module.createRequireFromPath === 'function') return Module.createRequireFromPath(anchor);
  return require;
}

function makeContext() {
  const sandbox = {};
  const context = vm.createContext(sandbox);
  const intrinsics = new Set(vm.runInContext('Object.getOwnPropertyNames(globalThis)', context));
  // Node's own globals (process, Buffer, timers, fetch, URL, ...) are copied in as they are.
  for (const name of Object.getOwnPropertyNames(global)) {
    if (intrinsics.has(name) || name === 'global' || name === 'globalThis') continue;
    Object.defineProperty(sandbox, name, Object.getOwnPropertyDescriptor(global, name));
  }
  const cellModule = { exports: {} };
  Object.assign(sandbox, {
    console: console, // V8 gives every context a console of its own that prints nowhere
    require: makeRequire(),
    module: cellModule,
    exports: cellModule.exports,
    __filename: path.join(process.cwd(), '[cell]'),
    __dirname: process.cwd(),
  });
  // Every import(...) in a cell calls this (node_esm.js rewrites it), non-enumerable like a builtin.
  Object.defineProperty(sandbox, esm.IMPORT_FN, { value: esm.importFromCell, enumerable: false });
  vm.runInContext('globalThis.global = globalThis', context);
  return context;
}

// ------------------------------------------------------------------ running cells

const state = { context: null, count: 0, abort: null };

function onSigint() {
  // Synchronous code is interrupted by breakOnSigint; this handler sees SIGINT otherwise: an
  // awaited run is abandoned (its state kept), and an idle SIGINT is ignored.
  if (state.abort) state.abort();
}

function interruptible(promise) {
  return new Promise(function (resolve, reject) {
    state.abort = function () { reject(interruptedError()); };
    promise.then(resolve, reject);
  });
}

// Runs synchronously up to the first await, so breakOnSigint covers all synchronous user code.
// Resolves to {value}: a promise as a synchronous cell's value is shown, not awaited.
const LEXER = { tokenize: tokenize, isPunct: isPunct, matching: matching, applyEdits: applyEdits, LexError: LexError };

function execute(src) {
  state.count += 1;
  if (LANGUAGE === 'typescript') src = esm.transpileTypeScript(src);
  const prepared = prepare(esm.rewriteModuleSyntax(src, LEXER), CELL_PREFIX + state.count + '>');
  const value = prepared.script.runInContext(state.context, { breakOnSigint: true });
  if (!prepared.isAsync) return Promise.resolve({ value: value });
  return interruptible(value).then(function (settled) { return { value: settled }; });
}

// A run's own environment variables, restored afterwards: [name, previous value or undefined].
function applyEnv(env) {
  const saved = [];
  if (!env || typeof env !== 'object') return saved;
  Object.keys(env).forEach(function (name) {
    if (typeof env[name] !== 'string') return;
    saved.push([name, Object.prototype.hasOwnProperty.call(process.env, name) ? process.env[name] : undefined]);
    process.env[name] = env[name];
  });
  return saved;
}

function restoreEnv(saved) {
  saved.forEach(function (entry) {
    if (entry[1] === undefined) delete process.env[entry[0]];
    else process.env[entry[0]] = entry[1];
  });
}

async function handle(request) {
  const reply = { id: request.id === undefined ? null : request.id, value: null, outputs: [], error: null };
  if (typeof request.code !== 'string') {
    reply.error = { ename: 'BadRequest', evalue: "request needs 'code'", traceback: "BadRequest: request needs 'code'" };
    return reply;
  }
  const saved = applyEnv(request.env);
  try {
    const value = (await execute(request.code)).value;
    reply.value = value === undefined ? null : inspect(value);
  } catch (err) {
    reply.error = describeError(err);
  } finally {
    state.abort = null;
    restoreEnv(saved);
  }
  return reply;
}

// ------------------------------------------------------------------ control channel

function writeAll(fd, data) {
  let offset = 0;
  while (offset < data.length) {
    try {
      offset += fs.writeSync(fd, data, offset, data.length - offset);
    } catch (err) {
      if (err.code !== 'EAGAIN') throw err;
    }
  }
}

function send(message) {
  writeAll(CTL_OUT_FD, Buffer.from(JSON.stringify(message) + '\n', 'utf8'));
}

function toBuffer(chunk, encoding) {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (ArrayBuffer.isView(chunk)) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  return Buffer.from(String(chunk), typeof encoding === 'string' ? encoding : 'utf8');
}

// stdout/stderr writes become plain synchronous syscalls. Output is then on the pipe before the
// reply is sent, and an interrupt (which terminates JS wherever it is) can't leave a stream's
// bookkeeping half-updated and the stream stuck for the rest of the session.
function makeSyncWrite(fd) {
  return function write(chunk, encoding, callback) {
    const done = typeof encoding === 'function' ? encoding : callback;
    try {
      writeAll(fd, toBuffer(chunk, encoding));
    } catch (err) {
      if (err.code !== 'EPIPE') throw err;
    }
    if (typeof done === 'function') process.nextTick(done);
    return true;
  };
}

function parseRequest(line) {
  try {
    const request = JSON.parse(line);
    if (request && typeof request === 'object' && !Array.isArray(request)) return request;
  } catch (ignored) {
    // Reported below like any other bad request.
  }
  return { id: null };
}

function serve(realExit) {
  const queue = [];
  let busy = false;
  const pump = function () {
    if (busy || queue.length === 0) return;
    busy = true;
    handle(queue.shift()).then(function (reply) {
      send(reply);
      busy = false;
      pump();
    });
  };
  let buffered = '';
  const input = new net.Socket({ fd: CTL_IN_FD, readable: true, writable: false });
  input.setEncoding('utf8');
  input.on('data', function (chunk) {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      if (line.trim()) queue.push(parseRequest(line));
    }
    pump();
  });
  input.on('end', function () { realExit(0); });
  input.on('error', function () { realExit(0); });
}

function configureProcess() {
  [process.stdout, process.stderr].forEach(function (stream, n) {
    // libuv made the pipe non-blocking; blocking writes don't spin on EAGAIN.
    if (stream._handle && typeof stream._handle.setBlocking === 'function') stream._handle.setBlocking(true);
    stream.write = makeSyncWrite(n + 1);
  });
  process.on('SIGINT', onSigint);
  process.on('uncaughtException', function (err) {
    process.stderr.write('Uncaught ' + (err && err.stack ? cleanStack(String(err.stack)) : inspect(err)) + '\n');
  });
  process.on('unhandledRejection', function (reason) {
    const shown = reason && reason.stack ? cleanStack(String(reason.stack)) : inspect(reason);
    process.stderr.write('Unhandled promise rejection: ' + shown + '\n');
  });
  const realExit = process.exit.bind(process);
  // Like SystemExit in the Python driver: user code can't end the interpreter by accident.
  process.exit = function exit(code) {
    const err = new Error('process.exit(' + (code === undefined ? '' : code) + ') was called; the interpreter keeps running');
    err.name = 'ProcessExit';
    throw err;
  };
  return realExit;
}

function main() {
  const realExit = configureProcess();
  state.context = makeContext();
  send({ ready: true, pid: process.pid, language: LANGUAGE });
  serve(realExit);
}

main();
