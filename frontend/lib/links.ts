/**
 * Whether a message's file link may be rendered as a link: only `http://`, `https://` or a
 * same-origin path starting with a single `/`. Anything else (`javascript:`, `data:`,
 * protocol-relative `//host`, `/\host` which browsers read as `//host`, or text with
 * whitespace or control characters) is shown as plain text.
 */
export function isSafeFileUrl(url: unknown): url is string {
  if (typeof url !== "string" || url.length === 0 || url.length > 2048) return false;
  if (/[\s\u0000-\u001f\u007f]/.test(url)) return false;
  if (/^https?:\/\/[^/\\]/i.test(url)) return true;
  return url.startsWith("/") && url[1] !== "/" && url[1] !== "\\";
}
