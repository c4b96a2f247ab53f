// replay — checks recorded answers of the real server against the OpenAPI document
// with Prism's own router and response validator (@stoplight/prism-http, the code
// behind `prism proxy`).
//
// Usage: node tests/contract/replay.mjs DOCUMENT RECORDING
//   RECORDING: one JSON object per line, {"method","path","status","headers":[[k,v]...],"body":base64},
//   written by tests/harness.py when FLASHSALE_TEST_RECORD names the file.
//
// Why not `prism proxy` in front of the server: the proxy parses and re-serializes
// request bodies (duplicate keys vanish, invalid UTF-8 becomes U+FFFD, broken JSON
// never reaches the server), so the API suite's bad-input cases would test Prism,
// not flashsale.  Here Prism's pipeline runs as in proxy mode, with only its
// transport replaced: the "upstream answer" is the one the suite really received.
//
// Prints one line per distinct answer (method, path template, status, error code):
// "PASS contract:answer:<...> (n)" or "FAIL contract:answer:<...>: <violations>".
// Every violation fails, warnings included: Prism rates an undeclared 4xx/5xx status
// a warning, and a status the document does not declare must fail.
// Requests the document has no operation for (unknown path: 404, known path with
// another method: 405) are checked against the document's `x-unrouted` answers.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const prismHttp = require('@stoplight/prism-http');
const route = require('@stoplight/prism-http/dist/router').default;
const { parseResponse } = require('@stoplight/prism-http/dist/utils/parseResponse');
const { createLogger } = require('@stoplight/prism-core');
// node-fetch and fp-ts as prism-http itself resolves them: its own versions.
const prismRequire = createRequire(require.resolve('@stoplight/prism-http'));
const { Response } = prismRequire('node-fetch');
const E = prismRequire('fp-ts/Either');

const [docPath, recordingPath] = process.argv.slice(2);
if (!docPath || !recordingPath) {
    console.error('usage: replay.mjs DOCUMENT RECORDING');
    process.exit(2);
}
const doc = JSON.parse(readFileSync(docPath, 'utf8'));
const exchanges = readFileSync(recordingPath, 'utf8').split('\n').filter(Boolean).map(l => JSON.parse(l));

// The answers of requests no operation takes, as one operation of their own.
const unroutedDoc = {
    openapi: doc.openapi,
    info: doc.info,
    paths: { '/unrouted': { get: { responses: doc['x-unrouted'] || {} } } },
    components: doc.components,
};

const operations = await prismHttp.getHttpOperationsFromSpec(docPath);
const unroutedOperations = await prismHttp.getHttpOperationsFromSpec(unroutedDoc);

const logger = createLogger('replay', {}, { write() {} }); // Prism's own log: not needed here
let current; // the recorded answer the next "forward" hands back
const prism = prismHttp.createInstance(
    {
        isProxy: true,
        upstream: new URL('http://recorded.invalid'),
        errors: false,
        validateRequest: false, // the suite sends invalid requests on purpose
        validateResponse: true,
        checkSecurity: false,
        mock: { dynamic: false },
    },
    {
        logger,
        forward: () => () => parseResponse(current),
    },
);

function recordedResponse(x) {
    const headers = x.headers.map(([k, v]) => [k, v]);
    const body = Buffer.from(x.body, 'base64');
    return new Response(x.status === 304 ? null : body, { status: x.status, headers });
}

function errorCode(x) {
    try {
        const j = JSON.parse(Buffer.from(x.body, 'base64').toString('utf8'));
        return j && typeof j.error === 'string' ? j.error : '';
    } catch {
        return '';
    }
}

const groups = new Map(); // name -> {n, violations: [...]}
for (const x of exchanges) {
    const input = { method: x.method.toLowerCase(), url: { path: x.path.split('?')[0], query: {} }, headers: {}, body: undefined };
    const routed = route({ resources: operations, input });
    let name, violations;
    if (E.isRight(routed)) {
        name = `${x.method} ${routed.right.path} ${x.status}`;
        current = recordedResponse(x);
        violations = await validate(input, operations);
    } else {
        const want = routed.left.status; // 404: no such path; 405: no such method
        name = `${x.method} (no operation: ${want}) ${x.status}`;
        current = recordedResponse(x);
        violations = x.status === want ? [] : [`Prism's router says ${want} for ${x.method} ${x.path}; the server answered ${x.status}`];
        violations.push(...(await validate({ ...input, method: 'get', url: { path: '/unrouted', query: {} } }, unroutedOperations)));
    }
    const code = errorCode(x);
    if (code) name += ` ${code}`;
    const g = groups.get(name) || { n: 0, violations: [] };
    g.n++;
    for (const v of violations) g.violations.push(`${v} [${x.method} ${x.path}]`);
    groups.set(name, g);
}

async function validate(input, ops) {
    const result = await prism.request(input, ops)();
    if (E.isLeft(result)) return [`Prism could not check it: ${result.left.message || result.left}`];
    return result.right.validations.output.map(v => `${(v.path || []).join('.')} ${v.message}`.trim());
}

let failed = 0;
for (const [name, g] of [...groups].sort()) {
    if (g.violations.length) {
        failed++;
        const shown = [...new Set(g.violations)].slice(0, 5).join('; ');
        console.log(`FAIL contract:answer:${name}: ${shown}`);
    } else {
        console.log(`PASS contract:answer:${name} (${g.n})`);
    }
}
console.log(`# ${exchanges.length} answers in ${groups.size} kinds checked against ${docPath}`);
process.exit(failed || !exchanges.length ? 1 : 0);
