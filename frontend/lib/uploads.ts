/**
 * Uploading a file for a message. `POST /api/uploads` with the file's name, type and size
 * answers where to send the bytes (`upload`: method, URL, headers) and what the message will
 * carry (`file`); the bytes then go there in one request, through XMLHttpRequest because it
 * reports upload progress. With banter's own storage that second answer is `{file}` with more
 * detail (an image's size and thumbnail); with S3 it is S3's empty 2xx, and the first answer's
 * `file` stands. Every failure is an ApiError whose message is a sentence to show as it is.
 */
import { ApiError, errorBody, parseJson } from "./api";
import { formatBytes } from "./files";
import { isSafeFileUrl } from "./links";
import type { FileRef } from "./types";

/** What an upload needs of a file: a File, or a Blob with a name. */
export interface UploadSource extends Blob {
  readonly name: string;
}

/** The answer of `POST /api/uploads`. */
export interface UploadTicket {
  upload: { method?: string; url: string; headers?: Record<string, string>; expires_at?: string };
  file: FileRef;
}

export interface UploadProgress {
  loaded: number;
  total: number;
}

/** The part of XMLHttpRequest an upload uses. */
export interface XhrLike {
  readonly status: number;
  readonly responseText: string;
  readonly upload: { onprogress: ((e: { loaded: number; total: number; lengthComputable: boolean }) => void) | null };
  onload: (() => void) | null;
  onerror: (() => void) | null;
  onabort: (() => void) | null;
  open(method: string, url: string): void;
  setRequestHeader(name: string, value: string): void;
  send(body: Blob): void;
  abort(): void;
}

export interface UploadOptions {
  onProgress?: (progress: UploadProgress) => void;
  /** Stand-ins for tests. */
  fetch?: (input: string, init: RequestInit) => Promise<Response>;
  createXhr?: () => XhrLike;
}

/** An upload under way. */
export interface Upload {
  /** The stored file, for the message; rejects with an ApiError (code `cancelled` after `cancel`). */
  done: Promise<FileRef>;
  /** Stops the upload wherever it is. */
  cancel(): void;
}

/** Headers the browser writes itself and refuses from a page. */
const BROWSER_HEADERS = new Set(["content-length", "host", "connection", "cookie", "origin", "referer"]);

/** Types for names the browser may not know; anything else unknown is sent as bytes. */
const TYPES_BY_EXTENSION: Record<string, string> = {
  md: "text/markdown",
  markdown: "text/markdown",
  txt: "text/plain",
  log: "text/plain",
  csv: "text/csv",
  json: "application/json",
  pdf: "application/pdf",
  zip: "application/zip",
  "7z": "application/x-7z-compressed",
  gz: "application/gzip",
  tar: "application/x-tar",
};

/** The type an upload declares: the browser's, else one known for the name's extension. */
export function uploadType(file: { name: string; type: string }): string {
  if (file.type) return file.type;
  const ext = /\.([a-z0-9]{1,8})$/i.exec(file.name)?.[1]?.toLowerCase();
  return (ext && TYPES_BY_EXTENSION[ext]) || "application/octet-stream";
}

const cancelled = () => new ApiError(0, { code: "cancelled", message: "Upload cancelled." });
const unreachable = () => new ApiError(0, { code: "network", message: "Cannot reach the server. Check your connection." });

/** Starts uploading `file`; progress is reported as the bytes go out. */
export function startUpload(file: UploadSource, options: UploadOptions = {}): Upload {
  const doFetch = options.fetch ?? ((input: string, init: RequestInit) => fetch(input, init));
  const createXhr = options.createXhr ?? (() => new XMLHttpRequest() as XhrLike);
  const type = uploadType(file);
  const controller = new AbortController();
  let xhr: XhrLike | null = null;
  let stopped = false;

  const done = (async (): Promise<FileRef> => {
    options.onProgress?.({ loaded: 0, total: file.size });
    let res: Response;
    try {
      res = await doFetch("/api/uploads", {
        method: "POST",
        credentials: "include",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name: file.name, type, size: file.size }),
        cache: "no-store",
        signal: controller.signal,
      });
    } catch {
      throw stopped ? cancelled() : unreachable();
    }
    const data = parseJson(await res.text().catch(() => ""));
    if (stopped) throw cancelled();
    if (!res.ok) throw uploadError(res.status, data, type);
    const ticket = readTicket(data);
    if (!ticket) throw new ApiError(res.status, { code: "internal", message: "The server’s answer was not understood. Please try again." });

    const answer = await new Promise<unknown>((resolve, reject) => {
      const x = createXhr();
      xhr = x;
      x.open((ticket.upload.method || "PUT").toUpperCase(), ticket.upload.url);
      for (const [name, value] of Object.entries(ticket.upload.headers ?? {})) {
        if (!BROWSER_HEADERS.has(name.toLowerCase())) x.setRequestHeader(name, String(value));
      }
      x.upload.onprogress = (e) => options.onProgress?.({ loaded: e.loaded, total: e.lengthComputable ? e.total : file.size });
      x.onload = () => {
        const body = parseJson(x.responseText ?? "");
        if (x.status >= 200 && x.status < 300) resolve(body);
        else reject(uploadError(x.status, body, type));
      };
      x.onerror = () => reject(stopped ? cancelled() : unreachable());
      x.onabort = () => reject(cancelled());
      // Cancelled while the first answer was read: stop before any byte is sent.
      if (stopped) reject(cancelled());
      else x.send(file);
    });
    options.onProgress?.({ loaded: file.size, total: file.size });
    return { ...ticket.file, ...storedFile(answer) };
  })();

  return {
    done,
    cancel() {
      if (stopped) return;
      stopped = true;
      controller.abort();
      xhr?.abort();
    },
  };
}

/** The answer of `POST /api/uploads`, when it has the shape the upload needs. */
function readTicket(data: unknown): UploadTicket | null {
  const t = data as Partial<UploadTicket> | undefined;
  if (!t || typeof t !== "object" || !t.upload || !t.file) return null;
  if (!isSafeFileUrl(t.upload.url) || typeof t.file.url !== "string" || typeof t.file.name !== "string") return null;
  if (t.upload.headers !== undefined && (typeof t.upload.headers !== "object" || t.upload.headers === null)) return null;
  return t as UploadTicket;
}

/** The `file` of the storage's answer (banter's own storage has one; S3's has none). */
function storedFile(answer: unknown): Partial<FileRef> {
  const file = (answer as { file?: unknown } | undefined)?.file;
  if (!file || typeof file !== "object" || typeof (file as FileRef).url !== "string") return {};
  return file as Partial<FileRef>;
}

/** The code an error answer without one (S3's XML, a proxy's page) stands for, by status. */
function codeForStatus(status: number): string {
  switch (status) {
    case 401:
      return "unauthorized";
    case 413:
      return "too_large";
    case 415:
      return "unsupported_type";
    case 429:
      return "rate_limited";
    default:
      return status >= 500 ? "unavailable" : "upload_failed";
  }
}

/** The server's words as a sentence: a capital first letter and a full stop. */
function asSentence(text: string): string {
  const t = text.trim();
  if (!t) return "";
  const s = t[0]!.toUpperCase() + t.slice(1);
  return /[.!?)]$/.test(s) ? s : `${s}.`;
}

/** The first positive number among the answer's fields that may carry the size limit. */
function sizeLimit(body: Record<string, unknown>): number | null {
  for (const key of ["max_bytes", "max_size", "limit_bytes", "limit", "max"]) {
    const v = body[key];
    if (typeof v === "number" && Number.isFinite(v) && v > 0) return v;
  }
  return null;
}

/** A refused upload (either request) as an ApiError whose message says what to do. */
export function uploadError(status: number, data: unknown, type = ""): ApiError {
  const body = errorBody(data);
  const code = typeof body.code === "string" && body.code ? body.code : codeForStatus(status);
  const said = typeof body.message === "string" ? asSentence(body.message) : "";
  const retryAfterMs = typeof body.retry_after_ms === "number" ? body.retry_after_ms : undefined;
  let message: string;
  switch (code) {
    case "too_large": {
      const limit = sizeLimit(body);
      message = limit ? `File is too large (max ${formatBytes(limit)}).` : said || "File is too large.";
      break;
    }
    case "unsupported_type":
      message = `${type ? `Files of type ${type}` : "Files of this type"} can’t be shared. Images, PDFs, text, documents and archives can.`;
      break;
    case "rate_limited": {
      const seconds = Math.max(1, Math.ceil((retryAfterMs ?? 1000) / 1000));
      message = `Too many uploads. Try again in ${seconds} s.`;
      break;
    }
    case "quota_exceeded":
      message = said || "You’ve used all your upload space.";
      break;
    case "unauthorized":
      message = "Your session has ended. Please sign in again.";
      break;
    case "unavailable":
    case "internal":
      message = "The server is unavailable. Please try again.";
      break;
    default:
      message = said || `The upload failed (HTTP ${status}). Please try again.`;
  }
  return new ApiError(status, { code, message, retry_after_ms: retryAfterMs });
}
