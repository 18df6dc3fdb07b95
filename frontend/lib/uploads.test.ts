import { describe, expect, it } from "vitest";
import { ApiError } from "./api";
import { fileKind, fitWithin, formatBytes, showsAsImage } from "./files";
import { startUpload, uploadError, uploadType, type UploadProgress, type XhrLike } from "./uploads";

/** A file as the browser hands it over (a Blob with a name). */
function picked(name: string, type: string, bytes = 2048) {
  return Object.assign(new Blob([new Uint8Array(bytes)], { type }), { name });
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });

const ticket = (over: Record<string, unknown> = {}) => ({
  upload: {
    method: "PUT",
    url: "/api/uploads/k1?expires=1&sig=abc",
    headers: { "Content-Type": "image/png", "Content-Length": "2048", "x-amz-meta-id": "7" },
    expires_at: "2030-01-01T00:00:00Z",
    ...over,
  },
  file: { url: "/uploads/k1", name: "cat.png", type: "image/png", size: 2048 },
});

/** The storage end: records what was sent, and answers as told. */
class FakeXhr implements XhrLike {
  static made: FakeXhr[] = [];
  status = 0;
  responseText = "";
  upload: XhrLike["upload"] = { onprogress: null };
  onload: (() => void) | null = null;
  onerror: (() => void) | null = null;
  onabort: (() => void) | null = null;
  method = "";
  url = "";
  headers: Record<string, string> = {};
  body: Blob | null = null;
  aborted = false;

  constructor() {
    FakeXhr.made.push(this);
  }
  open(method: string, url: string) {
    this.method = method;
    this.url = url;
  }
  setRequestHeader(name: string, value: string) {
    this.headers[name] = value;
  }
  send(body: Blob) {
    this.body = body;
  }
  abort() {
    this.aborted = true;
    this.onabort?.();
  }
  /** The bytes go out, then the storage answers. */
  finish(status: number, responseText = "") {
    const total = this.body?.size ?? 0;
    this.upload.onprogress?.({ loaded: Math.floor(total / 2), total, lengthComputable: true });
    this.upload.onprogress?.({ loaded: total, total, lengthComputable: true });
    this.status = status;
    this.responseText = responseText;
    this.onload?.();
  }
}

/** A `fetch` that answers `POST /api/uploads` with `answer` and records the request. */
function server(answer: () => Response | Promise<Response>) {
  const calls: { url: string; init: RequestInit }[] = [];
  return {
    calls,
    fetch: async (url: string, init: RequestInit) => {
      calls.push({ url, init });
      return answer();
    },
  };
}

async function nextXhr(): Promise<FakeXhr> {
  for (let i = 0; i < 20; i++) {
    const x = FakeXhr.made.at(-1);
    if (x?.body) return x;
    await new Promise((r) => setTimeout(r, 0));
  }
  throw new Error("no upload request was sent");
}

async function failure(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ApiError);
    return e as ApiError;
  }
  throw new Error("the upload did not fail");
}

describe("startUpload", () => {
  it("asks for a place, sends the bytes there with the headers given, reports progress, and keeps the stored file's details", async () => {
    FakeXhr.made = [];
    const api = server(() => json(201, ticket()));
    const progress: UploadProgress[] = [];
    const file = picked("cat.png", "image/png");
    const upload = startUpload(file, { fetch: api.fetch, createXhr: () => new FakeXhr(), onProgress: (p) => progress.push(p) });
    const xhr = await nextXhr();

    expect(api.calls).toHaveLength(1);
    expect(api.calls[0]!.url).toBe("/api/uploads");
    expect(api.calls[0]!.init.method).toBe("POST");
    expect(api.calls[0]!.init.credentials).toBe("include");
    expect(JSON.parse(String(api.calls[0]!.init.body))).toEqual({ name: "cat.png", type: "image/png", size: 2048 });
    expect(xhr.method).toBe("PUT");
    expect(xhr.url).toBe("/api/uploads/k1?expires=1&sig=abc");
    // Content-Length is the browser's to write.
    expect(xhr.headers).toEqual({ "Content-Type": "image/png", "x-amz-meta-id": "7" });
    expect(xhr.body).toBe(file);

    const stored = { url: "/uploads/k1", name: "cat.png", type: "image/png", size: 2048, width: 64, height: 48, thumbnail: "/uploads/k1.thumb.jpg" };
    xhr.finish(200, JSON.stringify({ file: stored }));
    expect(await upload.done).toEqual(stored);
    expect(progress[0]).toEqual({ loaded: 0, total: 2048 });
    expect(progress).toContainEqual({ loaded: 1024, total: 2048 });
    expect(progress.at(-1)).toEqual({ loaded: 2048, total: 2048 });
  });

  it("takes any 2xx without a body (S3) as done, with the file from the first answer", async () => {
    FakeXhr.made = [];
    const s3 = ticket({ url: "https://bucket.s3.example.com/k1?X-Amz-Signature=abc", headers: { "Content-Type": "image/png" } });
    const api = server(() => json(201, s3));
    const upload = startUpload(picked("cat.png", "image/png"), { fetch: api.fetch, createXhr: () => new FakeXhr() });
    const xhr = await nextXhr();
    expect(xhr.url).toBe("https://bucket.s3.example.com/k1?X-Amz-Signature=abc");
    xhr.finish(204);
    expect(await upload.done).toEqual(s3.file);
  });

  it("says why the server refused, in words, whether the error is flat or wrapped", async () => {
    const tooLarge = startUpload(picked("big.zip", "application/zip"), {
      fetch: server(() => json(413, { error: { code: "too_large", message: "file too large", max_bytes: 10 * 1024 * 1024 } })).fetch,
      createXhr: () => new FakeXhr(),
    });
    const e1 = await failure(tooLarge.done);
    expect(e1).toMatchObject({ status: 413, code: "too_large", message: "File is too large (max 10 MiB)." });

    const plain = await failure(
      startUpload(picked("big.zip", "application/zip"), {
        fetch: server(() => json(413, { code: "too_large", message: "file is larger than 10 MiB" })).fetch,
      }).done,
    );
    expect(plain.message).toBe("File is larger than 10 MiB.");

    const exe = await failure(
      startUpload(picked("setup.exe", "application/x-msdownload"), {
        fetch: server(() => json(415, { error: { code: "unsupported_type", message: "type not allowed" } })).fetch,
      }).done,
    );
    expect(exe.code).toBe("unsupported_type");
    expect(exe.message).toMatch(/^Files of type application\/x-msdownload can’t be shared\./);

    const limited = await failure(
      startUpload(picked("a.png", "image/png"), {
        fetch: server(() => json(429, { error: { code: "rate_limited", message: "slow down", retry_after_ms: 4200 } })).fetch,
      }).done,
    );
    expect(limited).toMatchObject({ code: "rate_limited", retryAfterMs: 4200, message: "Too many uploads. Try again in 5 s." });

    const quota = await failure(
      startUpload(picked("a.png", "image/png"), {
        fetch: server(() => json(403, { error: { code: "quota_exceeded", message: "upload quota of 100 MiB used up" } })).fetch,
      }).done,
    );
    expect(quota.message).toBe("Upload quota of 100 MiB used up.");

    const signedOut = await failure(
      startUpload(picked("a.png", "image/png"), { fetch: server(() => json(401, { code: "unauthorized", message: "no session" })).fetch }).done,
    );
    expect(signedOut).toMatchObject({ status: 401, code: "unauthorized" });
  });

  it("reads a refusal from the storage end by its status when it is not banter's JSON", async () => {
    FakeXhr.made = [];
    const upload = startUpload(picked("cat.png", "image/png"), { fetch: server(() => json(201, ticket())).fetch, createXhr: () => new FakeXhr() });
    (await nextXhr()).finish(403, "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>");
    const e = await failure(upload.done);
    expect(e).toMatchObject({ status: 403, message: "The upload failed (HTTP 403). Please try again." });
    expect(uploadError(413, undefined).message).toBe("File is too large.");
    expect(uploadError(502, undefined).message).toBe("The server is unavailable. Please try again.");
  });

  it("cancels while the bytes are going out", async () => {
    FakeXhr.made = [];
    const upload = startUpload(picked("cat.png", "image/png"), { fetch: server(() => json(201, ticket())).fetch, createXhr: () => new FakeXhr() });
    const xhr = await nextXhr();
    upload.cancel();
    expect(xhr.aborted).toBe(true);
    expect((await failure(upload.done)).code).toBe("cancelled");
  });

  it("cancels before the place to send to is known, and sends nothing", async () => {
    FakeXhr.made = [];
    let answer: (r: Response) => void = () => {};
    const api = server(() => new Promise<Response>((r) => (answer = r)));
    const upload = startUpload(picked("cat.png", "image/png"), { fetch: api.fetch, createXhr: () => new FakeXhr() });
    await new Promise((r) => setTimeout(r, 0));
    upload.cancel();
    expect((api.calls[0]!.init.signal as AbortSignal).aborted).toBe(true);
    answer(json(201, ticket()));
    expect((await failure(upload.done)).code).toBe("cancelled");
    expect(FakeXhr.made).toHaveLength(0);
  });

  it("fails in words when the server cannot be reached, and never sends to an unsafe address", async () => {
    const offline = await failure(
      startUpload(picked("a.png", "image/png"), {
        fetch: async () => {
          throw new TypeError("Failed to fetch");
        },
      }).done,
    );
    expect(offline).toMatchObject({ code: "network", message: "Cannot reach the server. Check your connection." });

    FakeXhr.made = [];
    const bad = await failure(
      startUpload(picked("a.png", "image/png"), {
        fetch: server(() => json(201, ticket({ url: "javascript:alert(1)" }))).fetch,
        createXhr: () => new FakeXhr(),
      }).done,
    );
    expect(bad.message).toMatch(/not understood/);
    expect(FakeXhr.made).toHaveLength(0);
  });

  it("declares a type from the name when the browser gives none", () => {
    expect(uploadType({ name: "notes.md", type: "" })).toBe("text/markdown");
    expect(uploadType({ name: "photo.png", type: "image/png" })).toBe("image/png");
    expect(uploadType({ name: "blob", type: "" })).toBe("application/octet-stream");
  });
});

describe("file display", () => {
  it("writes sizes in binary units", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(812)).toBe("812 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(10 * 1024 * 1024)).toBe("10 MiB");
    expect(formatBytes(15.4 * 1024 * 1024)).toBe("15 MiB");
    expect(formatBytes(Number.NaN)).toBe("");
  });

  it("names the kind of file", () => {
    expect(fileKind("application/pdf")).toBe("PDF");
    expect(fileKind("image/png")).toBe("PNG image");
    expect(fileKind("image/svg+xml")).toBe("SVG image");
    expect(fileKind("video/mp4")).toBe("MP4 video");
    expect(fileKind("audio/x-flac")).toBe("FLAC audio");
    expect(fileKind("audio/mpeg")).toBe("MP3 audio");
    expect(fileKind("application/vnd.openxmlformats-officedocument.wordprocessingml.document")).toBe("Word document");
    expect(fileKind("text/plain; charset=utf-8")).toBe("Text");
    expect(fileKind("application/octet-stream", "data.parquet")).toBe("PARQUET file");
    expect(fileKind("application/x-custom")).toBe("application/x-custom");
  });

  it("shows an image inline only with a thumbnail that is safe to load", () => {
    const img = { url: "/uploads/k1", name: "a.png", type: "image/png" };
    expect(showsAsImage({ ...img, thumbnail: "/uploads/k1.thumb.jpg" })).toBe(true);
    expect(showsAsImage(img)).toBe(false);
    expect(showsAsImage({ ...img, thumbnail: "javascript:alert(1)" })).toBe(false);
    expect(showsAsImage({ ...img, thumbnail: "//evil.example/x.jpg" })).toBe(false);
    expect(showsAsImage({ ...img, type: "application/pdf", thumbnail: "/uploads/k1.thumb.jpg" })).toBe(false);
  });

  it("fits a preview in its box, scaling down only and keeping the proportions", () => {
    expect(fitWithin(64, 48, 360, 280)).toEqual({ width: 64, height: 48 });
    expect(fitWithin(4000, 3000, 360, 280)).toEqual({ width: 360, height: 270 });
    expect(fitWithin(1000, 4000, 360, 280)).toEqual({ width: 70, height: 280 });
    expect(fitWithin(undefined, 48, 360, 280)).toBeNull();
    expect(fitWithin(0, 0, 360, 280)).toBeNull();
  });
});
