// The UI's client, as a UI team would write it: types generated from /openapi.json by
// openapi-typescript (src/schema.d.ts), calls through openapi-fetch, the API key sent by a
// middleware as the document's `ApiKey` bearer scheme says. Run against a production-mode
// server: every operation of the document once, the cursor pages, If-Match, and the problem
// bodies of 401, 404, 409, 412 and 422, all typed (`tsc --noEmit` under strict, no casts).
//
//   BASE_URL=http://127.0.0.1:8080 API_KEY=... npx tsx src/check.ts

import { EventSourceParserStream } from "eventsource-parser/stream";
import createClient, { type Middleware } from "openapi-fetch";

import type { components, operations, paths } from "./schema.js";

type Problem = components["schemas"]["Problem"];
type Role = components["schemas"]["Role"];
type OperationId = keyof operations;

const baseUrl = required("BASE_URL");
const apiKey = required("API_KEY");

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === "") {
    throw new Error(`${name} is not set`);
  }
  return value;
}

// --- bookkeeping -------------------------------------------------------------------------------

let passed = 0;
const exercised = new Set<string>();

function check(condition: boolean, what: string, detail?: unknown): void {
  if (!condition) {
    const extra = detail === undefined ? "" : `: ${JSON.stringify(detail)}`;
    throw new Error(`FAILED: ${what}${extra}`);
  }
  passed += 1;
  console.log(`ok   ${what}`);
}

/** What every openapi-fetch call resolves to, whichever operation it was. */
interface Outcome<Data> {
  data?: Data;
  error?: Problem;
  response: Response;
}

/** The typed body of a successful call with the expected status. */
function expectOk<Data>(op: OperationId, outcome: Outcome<Data>, status: number): Data {
  exercised.add(op);
  const { data, error, response } = outcome;
  check(
    response.status === status && data !== undefined,
    `${op} → ${status}`,
    error ?? response.status,
  );
  if (data === undefined) {
    throw new Error("unreachable: checked above");
  }
  return data;
}

/** The typed problem body of a failed call: RFC 9457 shape, content type, status. */
function expectProblem<Data>(
  op: OperationId,
  outcome: Outcome<Data>,
  status: number,
  why: string,
): Problem {
  exercised.add(op);
  const { error, response } = outcome;
  const contentType = response.headers.get("content-type");
  check(
    response.status === status &&
      error !== undefined &&
      error.status === status &&
      contentType === "application/problem+json" &&
      typeof error.title === "string" &&
      typeof error.detail === "string" &&
      typeof error.type === "string",
    `${op} → ${status} problem+json (${why})`,
    error ?? response.status,
  );
  if (error === undefined) {
    throw new Error("unreachable: checked above");
  }
  return error;
}

// --- the document -----------------------------------------------------------------------------

const specResponse = await fetch(`${baseUrl}/openapi.json`);
check(specResponse.status === 200, "GET /openapi.json without a key → 200");
const spec: unknown = await specResponse.json();
const docs = await fetch(`${baseUrl}/docs`);
check(docs.status === 200, "GET /docs without a key → 200");
const ready = await fetch(`${baseUrl}/health/ready`);
check(ready.status === 200, "GET /health/ready without a key → 200");

// The document as JSON, read without casts: openapi-typescript emits no types for security
// schemes or requirements, so this is read from the document itself.
function get(value: unknown, ...keys: string[]): unknown {
  let here = value;
  for (const key of keys) {
    if (typeof here !== "object" || here === null) return undefined;
    here = new Map<string, unknown>(Object.entries(here)).get(key);
  }
  return here;
}
function entries(value: unknown): [string, unknown][] {
  return typeof value === "object" && value !== null ? Object.entries(value) : [];
}

const scheme = get(spec, "components", "securitySchemes", "ApiKey");
check(
  get(scheme, "type") === "http" && get(scheme, "scheme") === "bearer",
  "components.securitySchemes.ApiKey is an http bearer scheme",
  scheme,
);
check(get(spec, "security") === undefined, "no document-wide security requirement");
const documented = new Set<string>();
for (const [path, item] of entries(get(spec, "paths"))) {
  for (const [method, op] of entries(item)) {
    const requirements = entries(get(op, "security"));
    const needsKey =
      requirements.length === 1 && requirements.every(([, r]) => get(r, "ApiKey") !== undefined);
    check(needsKey, `${method.toUpperCase()} ${path} declares security ApiKey`);
    const id = get(op, "operationId");
    if (typeof id === "string") documented.add(id);
  }
}

// --- auth: the server enforces what the document declares --------------------------------------

const anonymous = createClient<paths>({ baseUrl: `${baseUrl}/api/v1` });
const unauthorized = expectProblem(
  "listConversations",
  await anonymous.GET("/conversations"),
  401,
  "no key",
);
check(unauthorized.detail.includes("Bearer"), "the 401 says how to send the key", unauthorized);

const sendKey: Middleware = {
  onRequest({ request }) {
    request.headers.set("Authorization", `Bearer ${apiKey}`);
    return request;
  },
};
const api = createClient<paths>({ baseUrl: `${baseUrl}/api/v1` });
api.use(sendKey);

// --- conversations ------------------------------------------------------------------------------

const conversation = expectOk(
  "createConversation",
  await api.POST("/conversations", {
    body: { title: "TypeScript client check", metadata: { source: "clients/typescript" } },
  }),
  201,
);
const metadataSource: unknown = conversation.metadata["source"];
check(
  metadataSource === "clients/typescript" && conversation.archived === false,
  "metadata is a typed JSON object",
  conversation,
);
check(conversation.archived_at === undefined, "archived_at is absent while not archived");
const conversationPath = { params: { path: { id: conversation.id } } };

const renamed = expectOk(
  "updateConversation",
  await api.PATCH("/conversations/{id}", {
    ...conversationPath,
    body: { title: "TypeScript client check (renamed)" },
  }),
  200,
);
check(renamed.title === "TypeScript client check (renamed)", "the title changed");

const archived = expectOk(
  "archiveConversation",
  await api.POST("/conversations/{id}/archive", conversationPath),
  200,
);
check(archived.archived && typeof archived.archived_at === "string", "archived with a date");
const onlyArchived = expectOk(
  "listConversations",
  await api.GET("/conversations", { params: { query: { archived: true, limit: 100 } } }),
  200,
);
check(
  onlyArchived.items.some((c) => c.id === conversation.id),
  "archived=true lists the archived conversation",
);
const unarchived = expectOk(
  "unarchiveConversation",
  await api.POST("/conversations/{id}/unarchive", conversationPath),
  200,
);
check(!unarchived.archived && unarchived.archived_at === undefined, "unarchived");

// --- retries: Idempotency-Key ----------------------------------------------------------------
//
// A retry with the same key and body gets the first answer, byte for byte, and writes once;
// the same key with another body is a 422 naming the header (README, "Retries").

const retryKey = { "Idempotency-Key": `check-${Date.now()}` };
const firstTry = await api.POST("/conversations", {
  params: { header: retryKey },
  body: { title: "retried" },
  parseAs: "text",
});
const retried = await api.POST("/conversations", {
  params: { header: retryKey },
  body: { title: "retried" },
  parseAs: "text",
});
exercised.add("createConversation");
check(
  firstTry.response.status === 201 &&
    retried.response.status === 201 &&
    firstTry.data !== undefined &&
    firstTry.data === retried.data,
  "a retry with the same Idempotency-Key gets the first answer, byte for byte",
  [firstTry.data, retried.data],
);
const reused = expectProblem(
  "createConversation",
  await api.POST("/conversations", { params: { header: retryKey }, body: { title: "other" } }),
  422,
  "the key with another body",
);
check(
  reused.errors?.[0]?.field === "Idempotency-Key",
  "the 422 names the Idempotency-Key header",
  reused,
);

// --- exact numbers: the server keeps them, JSON.parse does not ---------------------------------
//
// `metadata`, `spec` and `parts` keep every number exactly (PostgreSQL's numeric, read back
// written out: 1e-400 as 0.000…1). JavaScript's JSON.parse, and so openapi-fetch's default
// `response.json()`, reads each number as a double: 39 digits come back as 17. A client that
// needs such numbers writes the body itself (`bodySerializer`, or JSON.rawJSON where the
// runtime has it) and reads the text (`parseAs: "text"`) with a lossless JSON parser.

const big = "123456789012345678901234567890123456789";
const tinyWrittenOut = `0.${"0".repeat(399)}1`;
const exact = await api.POST("/conversations", {
  body: { title: "exact numbers" },
  bodySerializer: () =>
    `{"title": "exact numbers", "metadata": {"big": ${big}, "tiny": 1e-400}}`,
  parseAs: "text",
});
exercised.add("createConversation");
const exactText: string | undefined = exact.data;
check(
  exact.response.status === 201 &&
    exactText !== undefined &&
    exactText.includes(`"big":${big}`) &&
    exactText.includes(`"tiny":${tinyWrittenOut}`),
  "the server answers the 39-digit integer and 1e-400 exactly (parseAs: text)",
  exactText?.slice(0, 200),
);
const asDoubles: unknown = JSON.parse(exactText ?? "{}");
const bigAsDouble = get(asDoubles, "metadata", "big");
check(
  typeof bigAsDouble === "number" && String(BigInt(bigAsDouble)) !== big,
  "JSON.parse rounds it to a double: parse such bodies losslessly",
  String(bigAsDouble),
);

// --- messages: each role, then every page through the cursor -----------------------------------

const roles: Role[] = ["system", "user", "assistant", "tool"];
const appended: number[] = [];
for (let round = 0; round < 2; round += 1) {
  for (const role of roles) {
    const message = expectOk(
      "appendMessage",
      await api.POST("/conversations/{id}/messages", {
        ...conversationPath,
        body:
          role === "tool"
            ? { role, content: `result ${round}`, tool_call_id: `call_${round}` }
            : { role, content: `${role} says ${round}`, parts: [{ type: "text", round }] },
      }),
      201,
    );
    check(message.role === role, `${role} message appended as seq ${message.seq}`);
    appended.push(message.seq);
  }
}
check(
  appended.every((seq, i) => seq === i + 1),
  "sequence numbers are 1..8 in append order",
  appended,
);

const seen: number[] = [];
let cursor: string | undefined;
let pages = 0;
do {
  const page = expectOk(
    "listMessages",
    await api.GET("/conversations/{id}/messages", {
      params: {
        path: { id: conversation.id },
        query: cursor === undefined ? { limit: 3 } : { limit: 3, cursor },
      },
    }),
    200,
  );
  pages += 1;
  seen.push(...page.items.map((m) => m.seq));
  cursor = page.next_cursor;
} while (cursor !== undefined);
check(
  pages === 3 && seen.join(",") === appended.join(","),
  "3 pages of at most 3 cover the 8 messages once, in order",
  { pages, seen },
);

const firstSeq = appended[0];
const firstPage = expectOk(
  "listMessages",
  await api.GET("/conversations/{id}/messages", {
    params: { path: { id: conversation.id }, query: { limit: 1 } },
  }),
  200,
);
const first = firstPage.items[0];
check(first !== undefined && first.seq === firstSeq, "the first page starts at seq 1");
if (first !== undefined) {
  const one = expectOk(
    "getMessage",
    await api.GET("/conversations/{id}/messages/{message_id}", {
      params: { path: { id: conversation.id, message_id: first.id } },
    }),
    200,
  );
  const parts: unknown[] | undefined = one.parts;
  check(one.role === "system" && parts !== undefined && parts.length === 1, "parts is an array");
}

// --- artifacts: create, update with If-Match, stale versions, history --------------------------

const created = await api.POST("/conversations/{id}/artifacts", {
  ...conversationPath,
  body: { kind: "chart", title: "Sales", spec: { type: "bar", values: [3, 1, 2] } },
});
const artifact = expectOk("createArtifact", created, 201);
check(
  artifact.version === 1 && created.response.headers.get("ETag") === '"1"',
  'version 1, ETag "1"',
);
const artifactPath = { params: { path: { id: artifact.id } } };

const current = await api.GET("/artifacts/{id}", artifactPath);
const read = expectOk("getArtifact", current, 200);
const etag = current.response.headers.get("ETag");
check(read.version === 1 && etag === '"1"', "GET returns the ETag of the current version");

const updated = await api.PATCH("/artifacts/{id}", {
  params: { path: { id: artifact.id }, header: { "If-Match": etag ?? "" } },
  body: { title: "Sales by region", spec: { type: "bar", values: [3, 1, 2, 5] } },
});
const v2 = expectOk("updateArtifact", updated, 200);
check(
  v2.version === 2 && updated.response.headers.get("ETag") === '"2"',
  'If-Match "1" → version 2, ETag "2"',
);

const stale = expectProblem(
  "updateArtifact",
  await api.PATCH("/artifacts/{id}", {
    params: { path: { id: artifact.id }, header: { "If-Match": '"1"' } },
    body: { title: "Lost update" },
  }),
  412,
  "stale If-Match",
);
check(stale.current_version === 2, "the 412 names the current version", stale);
const conflict = expectProblem(
  "updateArtifact",
  await api.PATCH("/artifacts/{id}", { ...artifactPath, body: { title: "Lost", version: 1 } }),
  409,
  "stale body version",
);
check(conflict.current_version === 2, "the 409 names the current version", conflict);

const listed = expectOk(
  "listArtifacts",
  await api.GET("/conversations/{id}/artifacts", conversationPath),
  200,
);
check(
  listed.items.length === 1 && listed.items[0]?.version === 2,
  "the conversation lists its artifact at version 2",
);
const versions = expectOk(
  "listArtifactVersions",
  await api.GET("/artifacts/{id}/versions", artifactPath),
  200,
);
check(
  versions.items.map((v) => v.version).join(",") === "1,2" && versions.next_cursor === undefined,
  "both versions, oldest first, one page",
);
const v1 = expectOk(
  "getArtifactVersion",
  await api.GET("/artifacts/{id}/versions/{version}", {
    params: { path: { id: artifact.id, version: 1 } },
  }),
  200,
);
const v1Values: unknown = v1.spec["values"];
check(
  v1.title === "Sales" && Array.isArray(v1Values) && v1Values.length === 3,
  "version 1 is kept as it was",
);

// --- problems: 404 and 422 -----------------------------------------------------------------------

const nowhere = "00000000-0000-4000-8000-000000000000";
const missing = expectProblem(
  "getConversation",
  await api.GET("/conversations/{id}", { params: { path: { id: nowhere } } }),
  404,
  "unknown id",
);
check(missing.detail.includes("not found"), "the 404 says what was not found", missing);

const empty = expectProblem(
  "appendMessage",
  await api.POST("/conversations/{id}/messages", {
    ...conversationPath,
    body: { role: "user", content: "" },
  }),
  422,
  "empty content",
);
check(empty.errors?.[0]?.field === "content", "the 422 names the field", empty);
const outOfRange = expectProblem(
  "listConversations",
  await api.GET("/conversations", { params: { query: { limit: 0 } } }),
  422,
  "limit 0",
);
check(outOfRange.errors?.[0]?.field === "limit", "the 422 names the parameter", outOfRange);

// --- the event stream: replay, drop and resume with Last-Event-ID, live, the end --------------

type ConversationEvent = components["schemas"]["ConversationEvent"];
type StreamHeaders = NonNullable<operations["streamConversationEvents"]["parameters"]["header"]>;

interface Received {
  id: number;
  event: string;
  data: ConversationEvent;
}

/**
 * Reads the stream of `conversationId` after `lastEventId` (as `Last-Event-ID`, the header a
 * browser's EventSource sends when it reconnects) until `enough` says so, then drops the
 * connection, as a UI does when the tab sleeps; or until the server ends the stream.
 * `whileOpen` runs once the stream is open, before its events are read.
 */
async function readStream(
  conversationId: string,
  lastEventId: number | undefined,
  enough: (received: Received[]) => boolean,
  whileOpen?: () => Promise<void>,
): Promise<{ events: Received[]; retry: number | undefined; ended: boolean }> {
  const headers: Record<string, string> = {
    Authorization: `Bearer ${apiKey}`,
    Accept: "text/event-stream",
  };
  // The header as the document declares it (a decimal string).
  const resume: StreamHeaders["Last-Event-ID"] =
    lastEventId === undefined ? undefined : String(lastEventId);
  if (resume !== undefined) {
    headers["Last-Event-ID"] = resume;
  }
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 15_000);
  const response = await fetch(`${baseUrl}/api/v1/conversations/${conversationId}/events`, {
    headers,
    signal: controller.signal,
  });
  exercised.add("streamConversationEvents");
  check(
    response.status === 200 && response.headers.get("content-type") === "text/event-stream",
    `streamConversationEvents → 200 text/event-stream (after ${lastEventId ?? "none"})`,
    response.status,
  );
  const events: Received[] = [];
  let retry: number | undefined;
  let ended = true;
  if (response.body === null) {
    throw new Error("a stream without a body");
  }
  const frames = response.body
    .pipeThrough(new TextDecoderStream())
    .pipeThrough(new EventSourceParserStream({ onRetry: (ms) => (retry = ms) }));
  try {
    // Subscribed once the answer's head is here: what is written from now on arrives.
    await whileOpen?.();
    for await (const frame of frames) {
      const data: ConversationEvent = JSON.parse(frame.data);
      events.push({ id: Number(frame.id), event: frame.event ?? "message", data });
      if (enough(events)) {
        ended = false;
        break;
      }
    }
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
  return { events, retry, ended };
}

// A sentinel marks the log's end as it is now: everything before it has happened.
const sentinel = expectOk(
  "appendMessage",
  await api.POST("/conversations/{id}/messages", {
    ...conversationPath,
    body: { role: "user", content: "stream sentinel" },
  }),
  201,
);
const isSentinel = (e: Received): boolean =>
  e.event === "message.created" && "content" in e.data && e.data.id === sentinel.id;
const whole = await readStream(conversation.id, undefined, (r) => r.some(isSentinel));
check(
  whole.events.every((e, i) => e.id === i + 1) && whole.retry === 1000,
  `the log replays ${whole.events.length} events with ids 1.. in order, and retry: 1000`,
  whole.events.map((e) => e.id),
);
const names = new Set(whole.events.map((e) => e.event));
check(
  ["conversation.updated", "conversation.archived", "conversation.unarchived", "message.created", "artifact.created", "artifact.updated"].every((n) => names.has(n)),
  "each change of this conversation is an event of its kind",
  [...names],
);
const messageEvents = whole.events.flatMap((e) =>
  e.event === "message.created" && "content" in e.data ? [e.data.seq] : [],
);
check(
  messageEvents.join(",") === [...appended, sentinel.seq].join(","),
  "message.created events carry the messages in append order",
  messageEvents,
);

// Dropped after 3 events, resumed from the last id received: the rest, once, in order.
const part = await readStream(conversation.id, undefined, (r) => r.length === 3);
const lastSeen = part.events[part.events.length - 1]?.id;
const rest = await readStream(conversation.id, lastSeen, (r) => r.some(isSentinel));
check(
  [...part.events, ...rest.events].map((e) => e.id).join(",") ===
    whole.events.map((e) => e.id).join(","),
  `dropped after ${lastSeen}, resumed with Last-Event-ID: every event once, in order`,
);

// Live: a stream open at the sentinel sees a message written after it opened.
const live = await readStream(
  conversation.id,
  whole.events[whole.events.length - 1]?.id,
  (r) => r.length === 1,
  async () => {
    expectOk(
      "appendMessage",
      await api.POST("/conversations/{id}/messages", {
        ...conversationPath,
        body: { role: "assistant", content: "said live" },
      }),
      201,
    );
  },
);
const said = live.events[0];
check(
  said !== undefined &&
    said.id === whole.events.length + 1 &&
    "content" in said.data &&
    said.data.content === "said live",
  "a message appended while the stream is open arrives live, with the next id",
  live.events,
);

// --- delete, then it is gone --------------------------------------------------------------------

let deletedStatus = 0;
const lastLive = said?.id;
const end = await readStream(
  conversation.id,
  lastLive,
  () => false,
  async () => {
    const deleted = await api.DELETE("/conversations/{id}", conversationPath);
    deletedStatus = deleted.response.status;
  },
);
exercised.add("deleteConversation");
check(deletedStatus === 204, "deleteConversation → 204");
check(
  end.ended && end.events.length === 1 && end.events[0]?.event === "conversation.deleted",
  "a stream open during the deletion gets conversation.deleted, then the server ends it",
  end.events,
);
expectProblem(
  "getConversation",
  await api.GET("/conversations/{id}", conversationPath),
  404,
  "deleted",
);
expectProblem("getArtifact", await api.GET("/artifacts/{id}", artifactPath), 404, "deleted with it");

// --- every operation of the document was exercised ------------------------------------------------

const notExercised = [...documented].filter((id) => !exercised.has(id));
check(
  notExercised.length === 0 && documented.size === exercised.size,
  `all ${documented.size} operations of the document exercised`,
  notExercised,
);

console.log(`typescript client: ${exercised.size} operations exercised`);
console.log(`${passed} passed, 0 failed`);
