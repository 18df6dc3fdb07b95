/**
 * How a message's file reads on screen: its size in words, what kind of file it is, whether
 * it shows as an image, and the box an image preview takes before it has loaded.
 */
import { isSafeFileUrl } from "./links";
import type { FileRef } from "./types";

/** A size in bytes in binary units: "812 B", "4.2 KiB", "10 MiB". */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return "";
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${Math.round(value)} B`;
  const shown = value < 10 ? Math.round(value * 10) / 10 : Math.round(value);
  return `${shown} ${units[unit]}`;
}

const KINDS: Record<string, string> = {
  "application/pdf": "PDF",
  "application/zip": "ZIP archive",
  "application/x-zip-compressed": "ZIP archive",
  "application/gzip": "GZIP archive",
  "application/x-gzip": "GZIP archive",
  "application/x-tar": "TAR archive",
  "application/x-7z-compressed": "7-Zip archive",
  "application/json": "JSON",
  "application/msword": "Word document",
  "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "Word document",
  "application/vnd.ms-excel": "Excel spreadsheet",
  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "Excel spreadsheet",
  "application/vnd.ms-powerpoint": "PowerPoint presentation",
  "application/vnd.openxmlformats-officedocument.presentationml.presentation": "PowerPoint presentation",
  "application/vnd.oasis.opendocument.text": "OpenDocument text",
  "application/vnd.oasis.opendocument.spreadsheet": "OpenDocument spreadsheet",
  "application/vnd.oasis.opendocument.presentation": "OpenDocument presentation",
  "application/rtf": "Rich text",
  "text/plain": "Text",
  "text/csv": "CSV",
  "text/markdown": "Markdown",
  "audio/mpeg": "MP3 audio",
  "video/quicktime": "QuickTime video",
};

/** What kind of file it is, in words: "PDF", "PNG image", "Word document", else its type. */
export function fileKind(type: string, name = ""): string {
  const mime = type.split(";")[0]!.trim().toLowerCase();
  const known = KINDS[mime];
  if (known) return known;
  const sub = /^image\/([a-z0-9.+-]+)$/.exec(mime)?.[1];
  if (sub) return `${sub.replace(/\+xml$/, "").replace(/^x-/, "").toUpperCase()} image`;
  const media = /^(video|audio)\/(?:x-)?([a-z0-9.+-]+)$/.exec(mime);
  if (media) return `${media[2]!.toUpperCase()} ${media[1]}`;
  const ext = /\.([a-z0-9]{1,8})$/i.exec(name)?.[1];
  if (ext && (mime === "" || mime === "application/octet-stream")) return `${ext.toUpperCase()} file`;
  return mime || "File";
}

/**
 * Whether a file shows as an inline image: an image type with a thumbnail that may be loaded
 * (a same-origin path or an http(s) URL).
 */
export function showsAsImage(file: FileRef): file is FileRef & { thumbnail: string } {
  return /^image\//i.test(file.type) && isSafeFileUrl(file.thumbnail);
}

/**
 * The size an image preview is shown at: its own size scaled down (never up) to fit
 * `maxWidth` × `maxHeight`, keeping its proportions; null when the size is unknown.
 */
export function fitWithin(
  width: number | undefined,
  height: number | undefined,
  maxWidth: number,
  maxHeight: number,
): { width: number; height: number } | null {
  if (!width || !height || !Number.isFinite(width) || !Number.isFinite(height) || width <= 0 || height <= 0) return null;
  const scale = Math.min(1, maxWidth / width, maxHeight / height);
  return { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
}
