"use client";

import { memo, useEffect, useLayoutEffect, useMemo, useRef, useState } from "react";
import type { ChannelState } from "@/lib/chat";
import { fileKind, fitWithin, formatBytes, showsAsImage } from "@/lib/files";
import { isSafeFileUrl } from "@/lib/links";
import { buildRows, timeLabel, type Row } from "@/lib/rows";
import type { Outgoing } from "@/lib/timeline";
import type { FileRef, User } from "@/lib/types";
import { Avatar } from "./Avatar";
import { AlertIcon, ArrowDownIcon, ClockIcon, DownloadIcon, FileIcon, HashIcon, PaperclipIcon } from "./icons";

/** Within this many pixels of the bottom, the view follows new messages. */
const STICK_PX = 80;
/** Within this many pixels of the top, the next older page is loaded. */
const LOAD_OLDER_PX = 300;

/**
 * The channel's messages, newest at the bottom. Scrolling up loads older pages; a prepended
 * page keeps what the reader is looking at in place. New messages follow the bottom when the
 * reader is there, and otherwise offer a jump to the latest.
 */
export function MessagePane({
  channel,
  state,
  user,
  now,
  blocked,
  onLoadOlder,
  onRetry,
  onDiscard,
  onRetryLoad,
}: {
  channel: string;
  state: ChannelState;
  user: User;
  now: Date;
  blocked: boolean;
  onLoadOlder: () => void;
  onRetry: (id: string) => void;
  onDiscard: (id: string) => void;
  onRetryLoad: () => void;
}) {
  const scroller = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  const last = useRef<{ height: number; firstSeq: number | null; count: number; outgoing: number }>({
    height: 0,
    firstSeq: null,
    count: 0,
    outgoing: 0,
  });
  const [unseen, setUnseen] = useState(false);

  const day = now.toDateString();
  // Rows depend on the day (for "Today"), not on every tick of the clock.
  // eslint-disable-next-line react-hooks/exhaustive-deps
  const rows = useMemo(() => buildRows(state.messages, state.outgoing, user.id, now), [state.messages, state.outgoing, user.id, day]);

  const firstSeq = state.messages[0]?.seq ?? null;
  const count = state.messages.length;
  const outgoingCount = state.outgoing.length;

  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const prev = last.current;
    const prepended = prev.firstSeq !== null && firstSeq !== null && firstSeq < prev.firstSeq;
    const sentByMe = outgoingCount > prev.outgoing;
    if (prepended) {
      // Keep the reader's place: the content above grew by exactly this much.
      el.scrollTop += el.scrollHeight - prev.height;
    } else if (atBottom.current || sentByMe || prev.count === 0) {
      el.scrollTop = el.scrollHeight;
    } else if (count > prev.count) {
      setUnseen(true);
    }
    last.current = { height: el.scrollHeight, firstSeq, count, outgoing: outgoingCount };
  }, [rows, firstSeq, count, outgoingCount]);

  // A first page shorter than the pane cannot be scrolled: load more until it can.
  useEffect(() => {
    const el = scroller.current;
    if (el && state.loaded && state.hasOlder && !state.loadingOlder && el.scrollHeight <= el.clientHeight + 8) {
      onLoadOlder();
    }
  }, [state.loaded, state.hasOlder, state.loadingOlder, count, onLoadOlder]);

  function onScroll() {
    const el = scroller.current;
    if (!el) return;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < STICK_PX;
    if (atBottom.current && unseen) setUnseen(false);
    if (el.scrollTop < LOAD_OLDER_PX && state.hasOlder && !state.loadingOlder) onLoadOlder();
  }

  function jumpToLatest() {
    const el = scroller.current;
    if (el) el.scrollTo({ top: el.scrollHeight, behavior: "smooth" });
    setUnseen(false);
  }

  return (
    <div className="relative min-h-0 flex-1">
      <div
        ref={scroller}
        onScroll={onScroll}
        className="message-scroller h-full overflow-y-auto overscroll-contain"
        tabIndex={0}
        role="log"
        aria-label={`Messages in #${channel}`}
        aria-busy={!state.loaded}
      >
        <div className="flex min-h-full flex-col justify-end px-3 pb-3 pt-6 sm:px-5">
          {state.loaded && !state.hasOlder ? <ChannelStart channel={channel} trimmed={state.firstSeq > 1} /> : null}
          {!state.loaded && !state.error ? <Loading label="Loading messages…" /> : null}
          {state.error ? (
            <div className="mx-auto my-6 flex flex-col items-center gap-2 text-sm text-slate-600" role="alert">
              <p>Couldn’t load messages: {state.error}</p>
              <button
                type="button"
                onClick={onRetryLoad}
                className="rounded-lg px-3 py-1.5 font-medium text-brand-700 ring-1 ring-brand-200 hover:bg-brand-50"
              >
                Try again
              </button>
            </div>
          ) : null}
          <ol className="space-y-0.5">
            {rows.map((row) => (
              <RowView key={row.key} row={row} user={user} blocked={blocked} onRetry={onRetry} onDiscard={onDiscard} />
            ))}
          </ol>
        </div>
      </div>
      {state.loadingOlder ? (
        // An overlay, so that it does not move the messages while the page loads.
        <div className="pointer-events-none absolute inset-x-0 top-2 flex justify-center">
          <div className="rounded-full bg-white/95 px-3 shadow-sm ring-1 ring-slate-200">
            <Loading label="Loading older messages…" />
          </div>
        </div>
      ) : null}
      {unseen ? (
        <button
          type="button"
          onClick={jumpToLatest}
          className="absolute bottom-3 left-1/2 inline-flex -translate-x-1/2 items-center gap-1.5 rounded-full bg-brand-600 px-3.5 py-1.5 text-sm font-medium text-white shadow-lg hover:bg-brand-700 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-brand-600"
        >
          <ArrowDownIcon className="h-4 w-4" />
          New messages
        </button>
      ) : null}
    </div>
  );
}

function Loading({ label }: { label: string }) {
  return (
    <div className="flex items-center justify-center gap-2 py-2 text-sm text-slate-500" role="status">
      <span className="h-4 w-4 animate-spin rounded-full border-2 border-slate-300 border-t-brand-600" aria-hidden="true" />
      {label}
    </div>
  );
}

/** The top of the history: the channel's beginning, or where the messages still kept begin. */
function ChannelStart({ channel, trimmed }: { channel: string; trimmed: boolean }) {
  return (
    <div className="mb-6 px-2">
      <span className="flex h-12 w-12 items-center justify-center rounded-xl bg-brand-50 text-brand-600" aria-hidden="true">
        <HashIcon className="h-6 w-6" />
      </span>
      <p className="mt-3 text-xl font-semibold tracking-tight text-slate-900">Welcome to #{channel}</p>
      <p className="mt-1 text-sm text-slate-500">
        {trimmed
          ? `Older messages in #${channel} are no longer kept; this is the oldest one still here.`
          : `This is the very beginning of the #${channel} channel.`}
      </p>
    </div>
  );
}

const RowView = memo(function RowView({
  row,
  user,
  blocked,
  onRetry,
  onDiscard,
}: {
  row: Row;
  user: User;
  blocked: boolean;
  onRetry: (id: string) => void;
  onDiscard: (id: string) => void;
}) {
  if (row.kind === "day") {
    return (
      <li className="relative my-4 flex items-center" aria-label={row.label}>
        <span className="h-px flex-1 bg-slate-200" aria-hidden="true" />
        <span className="mx-3 rounded-full bg-white px-3 py-0.5 text-xs font-medium text-slate-500 ring-1 ring-slate-200">
          {row.label}
        </span>
        <span className="h-px flex-1 bg-slate-200" aria-hidden="true" />
      </li>
    );
  }
  if (row.kind === "message") {
    const m = row.message;
    return (
      <MessageShell sender={m.sender} createdAt={m.createdAt} showHeader={row.showHeader} mine={m.sender_id === user.id}>
        <MessageBody text={m.text} file={m.file} />
      </MessageShell>
    );
  }
  return <OutgoingView o={row.outgoing} user={user} showHeader={row.showHeader} blocked={blocked} onRetry={onRetry} onDiscard={onDiscard} />;
});

function MessageShell({
  sender,
  createdAt,
  showHeader,
  mine,
  children,
  status,
}: {
  sender: string;
  createdAt: string;
  showHeader: boolean;
  mine: boolean;
  children: React.ReactNode;
  status?: React.ReactNode;
}) {
  const at = new Date(createdAt);
  const time = timeLabel(at);
  return (
    <li className={`group flex gap-3 rounded-lg px-2 hover:bg-slate-50 ${showHeader ? "mt-3 pt-1 pb-0.5" : "py-0.5"}`}>
      <div className="w-9 shrink-0">
        {showHeader ? (
          <Avatar name={sender} />
        ) : (
          <time
            dateTime={createdAt}
            title={at.toLocaleString()}
            className="invisible block pt-0.5 text-right text-[11px] leading-5 text-slate-400 group-hover:visible"
          >
            {time}
          </time>
        )}
      </div>
      <div className="min-w-0 flex-1">
        {showHeader ? (
          <p className="flex items-baseline gap-2">
            <span className="text-[15px] font-semibold text-slate-900">{sender}</span>
            {mine ? <span className="sr-only">(you)</span> : null}
            <time dateTime={createdAt} title={at.toLocaleString()} className="text-xs text-slate-400">
              {time}
            </time>
          </p>
        ) : null}
        {children}
        {status}
      </div>
    </li>
  );
}

/** Most room an image preview takes, in CSS pixels (less on a narrow screen). */
const PREVIEW_MAX_WIDTH = 360;
const PREVIEW_MAX_HEIGHT = 280;

/**
 * Message text is rendered as text, never as HTML; line breaks are kept by CSS. A text that is
 * only the attached file's name (sent without words) is not repeated above the file.
 */
function MessageBody({ text, file, muted }: { text: string; file?: FileRef; muted?: boolean }) {
  const onlyName = file !== undefined && text.trim() === file.name.trim();
  return (
    <>
      {onlyName ? null : (
        <p className={`whitespace-pre-wrap break-words text-[15px] leading-relaxed ${muted ? "text-slate-500" : "text-slate-800"}`}>
          {text}
        </p>
      )}
      {file ? <FileAttachment file={file} /> : null}
    </>
  );
}

/** An image with a thumbnail shows inline; any other file is a card to open or download. */
function FileAttachment({ file }: { file: FileRef }) {
  return showsAsImage(file) ? <ImagePreview file={file} /> : <FileCard file={file} />;
}

/**
 * The image's thumbnail at its own proportions, in a box sized from the message before it
 * loads (so nothing moves when it does); it opens the full image in a new tab.
 */
function ImagePreview({ file }: { file: FileRef & { thumbnail: string } }) {
  const box = fitWithin(file.width, file.height, PREVIEW_MAX_WIDTH, PREVIEW_MAX_HEIGHT);
  const image = (
    // Thumbnails come from banter with the session cookie, not through Next's image optimizer.
    // eslint-disable-next-line @next/next/no-img-element
    <img
      src={file.thumbnail}
      alt={file.name}
      width={box?.width}
      height={box?.height}
      decoding="async"
      className="block h-auto max-w-full bg-slate-100 object-contain"
      style={box ? undefined : { maxWidth: PREVIEW_MAX_WIDTH, maxHeight: PREVIEW_MAX_HEIGHT }}
    />
  );
  const cls = "mt-1.5 block w-fit max-w-full overflow-hidden rounded-lg ring-1 ring-slate-200";
  if (!isSafeFileUrl(file.url)) return <div className={cls}>{image}</div>;
  return (
    <a
      href={file.url}
      target="_blank"
      rel="noopener noreferrer nofollow"
      title={`${file.name} — open the full image`}
      className={`${cls} transition hover:ring-brand-300 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-brand-600`}
    >
      {image}
    </a>
  );
}

/**
 * A file as a card: its name, size and kind. A file uploaded here (a same-origin path) is a
 * download; an outside link opens in a new tab; an unsafe link is shown as text only.
 */
function FileCard({ file }: { file: FileRef }) {
  const local = isSafeFileUrl(file.url) && file.url.startsWith("/");
  const details = [typeof file.size === "number" ? formatBytes(file.size) : "", fileKind(file.type, file.name)].filter(Boolean).join(" · ");
  const body = (
    <>
      <span className="flex h-9 w-9 shrink-0 items-center justify-center rounded-md bg-brand-50 text-brand-600" aria-hidden="true">
        {local ? <FileIcon className="h-[18px] w-[18px]" /> : <PaperclipIcon className="h-[18px] w-[18px]" />}
      </span>
      <span className="min-w-0 flex-1">
        <span className="block truncate font-medium group-hover/file:underline">{file.name}</span>
        <span className="block truncate text-xs text-slate-500">{details}</span>
      </span>
      {local ? <DownloadIcon className="h-4 w-4 shrink-0 text-slate-400" /> : null}
    </>
  );
  const cls = "mt-1.5 flex w-full max-w-sm items-center gap-3 rounded-lg bg-white px-3 py-2 text-sm ring-1 ring-slate-200";
  if (!isSafeFileUrl(file.url)) return <span className={`${cls} text-slate-600`}>{body}</span>;
  return (
    <a
      href={file.url}
      {...(local ? { download: file.name } : { target: "_blank" })}
      rel="noopener noreferrer nofollow"
      title={local ? `Download ${file.name}` : file.url}
      className={`${cls} text-brand-700 hover:bg-slate-50 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-brand-600 group/file`}
    >
      {body}
    </a>
  );
}

function OutgoingView({
  o,
  user,
  showHeader,
  blocked,
  onRetry,
  onDiscard,
}: {
  o: Outgoing;
  user: User;
  showHeader: boolean;
  blocked: boolean;
  onRetry: (id: string) => void;
  onDiscard: (id: string) => void;
}) {
  const failed = o.status === "failed";
  const status = failed ? (
    <div className="mt-1 flex flex-wrap items-center gap-x-3 gap-y-1 text-xs" role="alert">
      <span className="inline-flex items-center gap-1 font-medium text-rose-600">
        <AlertIcon className="h-3.5 w-3.5" />
        Not sent. {o.error}
      </span>
      <button type="button" onClick={() => onRetry(o.client_message_id)} className="font-semibold text-brand-700 hover:underline">
        Retry
      </button>
      <button type="button" onClick={() => onDiscard(o.client_message_id)} className="text-slate-500 hover:underline">
        Discard
      </button>
    </div>
  ) : (
    <p className="mt-0.5 inline-flex items-center gap-1 text-xs text-slate-400">
      <ClockIcon className="h-3.5 w-3.5" />
      {o.status === "queued" && blocked ? "Waiting to send — rate limited" : "Sending…"}
    </p>
  );
  return (
    <MessageShell sender={user.username} createdAt={o.createdAt} showHeader={showHeader} mine status={status}>
      <div aria-label={failed ? "Message not sent" : "Message pending"}>
        <MessageBody text={o.text} file={o.file} muted />
      </div>
    </MessageShell>
  );
}
