"use client";

import { memo, useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState, type KeyboardEvent, type ReactNode } from "react";
import { mentionsUser, splitMentions } from "@/lib/changes";
import type { ChannelState } from "@/lib/chat";
import { fileKind, fitWithin, formatBytes, showsAsImage } from "@/lib/files";
import { isSafeFileUrl } from "@/lib/links";
import { buildRows, timeLabel, type Row } from "@/lib/rows";
import type { Outgoing } from "@/lib/timeline";
import type { FileRef, Message, Reaction, ReplyQuote, User } from "@/lib/types";
import { Avatar } from "./Avatar";
import {
  AlertIcon,
  ArrowDownIcon,
  AtIcon,
  ClockIcon,
  DownloadIcon,
  FileIcon,
  HashIcon,
  MoreIcon,
  PaperclipIcon,
  PencilIcon,
  ReplyIcon,
  SmileIcon,
  TrashIcon,
} from "./icons";

/** What can be done to a stored message from its row. */
export interface MessageActions {
  reply(message: Message): void;
  edit(message: Message, text: string): Promise<boolean>;
  askDelete(message: Message): void;
  react(message: Message, emoji: string): void;
  askRemove(username: string): void;
  askBan(username: string): void;
}

/** What the reader may do beyond their own messages. */
export interface Permissions {
  /** Delete anyone's message and remove members (the channel's owner, an administrator). */
  moderate: boolean;
  /** Ban people (an administrator). */
  admin: boolean;
  /** A direct-message channel (nobody can be removed from it). */
  dm: boolean;
}

/** The emoji offered by the reaction picker. */
export const QUICK_REACTIONS = ["👍", "❤️", "😂", "🎉", "😮", "😢", "🙏", "👀"];

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
  title,
  state,
  user,
  now,
  blocked,
  actions,
  permissions,
  onLoadOlder,
  onRetry,
  onDiscard,
  onRetryLoad,
}: {
  channel: string;
  /** How the channel is named to the reader: `#name`, or `@person` for a direct message. */
  title: string;
  state: ChannelState;
  user: User;
  now: Date;
  blocked: boolean;
  actions: MessageActions;
  permissions: Permissions;
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

  /** Shows a quoted message when it is loaded, and makes it stand out for a moment. */
  const jumpTo = useCallback(
    (id: string) => {
      const el = scroller.current?.querySelector<HTMLElement>(`[data-message-id="${CSS.escape(id)}"]`);
      if (!el) return false;
      el.scrollIntoView({ block: "center", behavior: "smooth" });
      el.classList.add("message-flash");
      window.setTimeout(() => el.classList.remove("message-flash"), 1600);
      return true;
    },
    [],
  );

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
        aria-label={`Messages in ${title}`}
        aria-busy={!state.loaded}
      >
        <div className="flex min-h-full flex-col justify-end px-3 pb-3 pt-6 sm:px-5">
          {state.loaded && !state.hasOlder ? <ChannelStart channel={channel} title={title} dm={permissions.dm} trimmed={state.firstSeq > 1} /> : null}
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
              <RowView
                key={row.key}
                row={row}
                user={user}
                blocked={blocked}
                actions={actions}
                permissions={permissions}
                channel={channel}
                onJump={jumpTo}
                onRetry={onRetry}
                onDiscard={onDiscard}
              />
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
function ChannelStart({ channel, title, dm, trimmed }: { channel: string; title: string; dm: boolean; trimmed: boolean }) {
  return (
    <div className="mb-6 px-2">
      <span className="flex h-12 w-12 items-center justify-center rounded-xl bg-brand-50 text-brand-600" aria-hidden="true">
        {dm ? <AtIcon className="h-6 w-6" /> : <HashIcon className="h-6 w-6" />}
      </span>
      <p className="mt-3 text-xl font-semibold tracking-tight text-slate-900">{dm ? `You and ${title}` : `Welcome to #${channel}`}</p>
      <p className="mt-1 text-sm text-slate-500">
        {trimmed
          ? `Older messages here are no longer kept; this is the oldest one still here.`
          : dm
            ? `This is the very beginning of your direct messages with ${title}.`
            : `This is the very beginning of the #${channel} channel.`}
      </p>
    </div>
  );
}

const RowView = memo(function RowView({
  row,
  user,
  blocked,
  actions,
  permissions,
  channel,
  onJump,
  onRetry,
  onDiscard,
}: {
  row: Row;
  user: User;
  blocked: boolean;
  actions: MessageActions;
  permissions: Permissions;
  channel: string;
  onJump: (id: string) => boolean;
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
    return (
      <StoredMessage
        message={row.message}
        showHeader={row.showHeader}
        user={user}
        actions={actions}
        permissions={permissions}
        channel={channel}
        onJump={onJump}
      />
    );
  }
  return (
    <OutgoingView o={row.outgoing} user={user} showHeader={row.showHeader} blocked={blocked} onJump={onJump} onRetry={onRetry} onDiscard={onDiscard} />
  );
});

/**
 * A stored message: its quote when it answers one, its text (or the tombstone of a deleted
 * one), "(edited)", its reactions, and the actions the reader may take on it.
 */
function StoredMessage({
  message: m,
  showHeader,
  user,
  actions,
  permissions,
  channel,
  onJump,
}: {
  message: Message;
  showHeader: boolean;
  user: User;
  actions: MessageActions;
  permissions: Permissions;
  channel: string;
  onJump: (id: string) => boolean;
}) {
  const [editing, setEditing] = useState(false);
  const mine = m.sender_id === user.id;
  // In a direct message everything is for the reader: only channels single mentions out.
  const mentioned = !permissions.dm && mentionsUser(m, user);
  const toolbar = m.deleted || editing ? null : (
    <MessageToolbar message={m} mine={mine} actions={actions} permissions={permissions} channel={channel} onEdit={() => setEditing(true)} />
  );
  return (
    <MessageShell
      sender={m.sender}
      createdAt={m.createdAt}
      showHeader={showHeader}
      mine={mine}
      messageId={m.id}
      highlight={mentioned}
      toolbar={toolbar}
    >
      {mentioned ? <span className="sr-only">Mentions you.</span> : null}
      {m.reply_to ? <QuoteView quote={m.reply_to} onJump={onJump} /> : null}
      {m.deleted ? (
        <p className="text-[15px] italic leading-relaxed text-slate-400">This message was deleted</p>
      ) : editing ? (
        <EditBox
          initial={m.text}
          onCancel={() => setEditing(false)}
          onSave={async (text) => {
            if (text.trim() === m.text.trim()) return setEditing(false);
            if (await actions.edit(m, text)) setEditing(false);
          }}
        />
      ) : (
        <MessageBody text={m.text} file={m.file} me={user.username} edited={m.edited_at} />
      )}
      {!m.deleted && m.reactions?.length ? <Reactions reactions={m.reactions} onToggle={(emoji) => actions.react(m, emoji)} /> : null}
    </MessageShell>
  );
}

/** The message a reply answers: who wrote it and how it began; a click shows it when it is loaded. */
function QuoteView({ quote, onJump }: { quote: ReplyQuote; onJump: (id: string) => boolean }) {
  const [missing, setMissing] = useState(false);
  const words = quote.deleted ? "Original message was deleted" : quote.text === undefined ? "Original message is no longer kept" : quote.text;
  return (
    <button
      type="button"
      onClick={() => setMissing(!onJump(quote.id))}
      aria-label={`Reply to ${quote.sender ?? "a message"}: ${words}`}
      title={missing ? "That message is not loaded; scroll up to find it" : "Show the original message"}
      className="mb-1 flex w-full max-w-xl items-baseline gap-1.5 truncate rounded-md border-l-2 border-slate-300 bg-slate-100/70 px-2 py-1 text-left text-[13px] text-slate-600 hover:border-brand-500 hover:bg-slate-100 focus-visible:outline-2 focus-visible:outline-brand-600"
    >
      <ReplyIcon className="h-3.5 w-3.5 shrink-0 self-center text-slate-400" />
      {quote.sender ? <span className="shrink-0 font-semibold text-slate-700">{quote.sender}</span> : null}
      <span className={`truncate ${quote.deleted || quote.text === undefined ? "italic text-slate-400" : ""}`}>{words}</span>
    </button>
  );
}

/** The reactions under a message: each emoji with its count; the reader's own are pressed. */
function Reactions({ reactions, onToggle }: { reactions: Reaction[]; onToggle: (emoji: string) => void }) {
  return (
    <ul className="mt-1 flex flex-wrap gap-1" aria-label="Reactions">
      {reactions.map((r) => (
        <li key={r.emoji}>
          <button
            type="button"
            onClick={() => onToggle(r.emoji)}
            aria-pressed={r.me ? true : false}
            aria-label={`${r.emoji} ${r.count} ${r.count === 1 ? "reaction" : "reactions"}${r.me ? ", including yours" : ""}`}
            title={r.me ? "Take your reaction back" : `React with ${r.emoji}`}
            className={`inline-flex items-center gap-1 rounded-full px-2 py-0.5 text-sm ring-1 transition focus-visible:outline-2 focus-visible:outline-brand-600 ${
              r.me ? "bg-brand-50 text-brand-700 ring-brand-300" : "bg-white text-slate-600 ring-slate-200 hover:bg-slate-50"
            }`}
          >
            <span aria-hidden="true">{r.emoji}</span>
            <span className="text-xs font-medium tabular-nums" aria-hidden="true">
              {r.count}
            </span>
          </button>
        </li>
      ))}
    </ul>
  );
}

/** Editing a message in place: Enter saves, Shift+Enter breaks the line, Escape cancels. */
function EditBox({ initial, onSave, onCancel }: { initial: string; onSave: (text: string) => void; onCancel: () => void }) {
  const [text, setText] = useState(initial);
  const [busy, setBusy] = useState(false);
  const empty = text.trim().length === 0;
  const save = async () => {
    if (empty || busy) return;
    setBusy(true);
    await onSave(text);
    setBusy(false);
  };
  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === "Escape") {
      e.preventDefault();
      onCancel();
    } else if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      void save();
    }
  };
  return (
    <div className="mt-0.5">
      <textarea
        aria-label="Edit message"
        value={text}
        autoFocus
        onChange={(e) => setText(e.target.value)}
        onKeyDown={onKeyDown}
        onFocus={(e) => e.currentTarget.setSelectionRange(e.currentTarget.value.length, e.currentTarget.value.length)}
        className="field-sizing-content block max-h-48 min-h-[2.5rem] w-full resize-none rounded-lg bg-white px-2.5 py-1.5 text-[15px] leading-6 text-slate-900 outline-none ring-1 ring-slate-300 focus:ring-2 focus:ring-brand-500"
      />
      <div className="mt-1 flex items-center gap-2 text-xs">
        <button
          type="button"
          onClick={() => void save()}
          disabled={empty || busy}
          className="rounded-md bg-brand-600 px-2.5 py-1 font-semibold text-white hover:bg-brand-700 disabled:opacity-60"
        >
          Save
        </button>
        <button type="button" onClick={onCancel} className="rounded-md px-2.5 py-1 font-medium text-slate-600 ring-1 ring-slate-300 hover:bg-slate-50">
          Cancel
        </button>
        <span className="text-slate-400">Escape to cancel · Enter to save</span>
      </div>
    </div>
  );
}

const toolButton =
  "inline-flex h-7 w-7 items-center justify-center rounded-md text-slate-500 hover:bg-slate-100 hover:text-slate-800 focus-visible:outline-2 focus-visible:outline-brand-600";

/**
 * The actions on a message, shown while it is hovered or focused: react, reply, and a menu
 * with edit and delete (one's own) and the moderation items for those allowed.
 */
function MessageToolbar({
  message: m,
  mine,
  actions,
  permissions,
  channel,
  onEdit,
}: {
  message: Message;
  mine: boolean;
  actions: MessageActions;
  permissions: Permissions;
  channel: string;
  onEdit: () => void;
}) {
  const [open, setOpen] = useState<"react" | "menu" | null>(null);
  const box = useRef<HTMLDivElement>(null);

  useEffect(() => {
    if (!open) return;
    const close = (e: MouseEvent) => {
      if (!box.current?.contains(e.target as Node)) setOpen(null);
    };
    const escape = (e: globalThis.KeyboardEvent) => {
      if (e.key === "Escape") setOpen(null);
    };
    document.addEventListener("mousedown", close);
    document.addEventListener("keydown", escape);
    return () => {
      document.removeEventListener("mousedown", close);
      document.removeEventListener("keydown", escape);
    };
  }, [open]);

  const items: { label: string; run: () => void; danger?: boolean; icon: ReactNode }[] = [];
  if (mine) items.push({ label: "Edit message", run: onEdit, icon: <PencilIcon className="h-4 w-4" /> });
  if (mine || permissions.moderate) {
    items.push({ label: "Delete message", run: () => actions.askDelete(m), danger: true, icon: <TrashIcon className="h-4 w-4" /> });
  }
  if (!mine && permissions.moderate && !permissions.dm) {
    items.push({ label: `Remove ${m.sender} from #${channel}`, run: () => actions.askRemove(m.sender), danger: true, icon: <AlertIcon className="h-4 w-4" /> });
  }
  if (!mine && permissions.admin && m.sender_id) {
    items.push({ label: `Ban ${m.sender}`, run: () => actions.askBan(m.sender), danger: true, icon: <AlertIcon className="h-4 w-4" /> });
  }

  return (
    <div
      ref={box}
      role="toolbar"
      aria-label="Message actions"
      className={`absolute -top-3 right-2 z-10 flex items-center gap-0.5 rounded-lg bg-white p-0.5 shadow-sm ring-1 ring-slate-200 transition ${
        // Hidden and out of the way (of taps too) until the message is hovered or focused.
        open
          ? "opacity-100"
          : "pointer-events-none opacity-0 group-hover:pointer-events-auto group-hover:opacity-100 focus-within:pointer-events-auto focus-within:opacity-100"
      }`}
    >
      <button
        type="button"
        className={toolButton}
        aria-label="Add reaction"
        title="Add reaction"
        aria-expanded={open === "react"}
        onClick={() => setOpen(open === "react" ? null : "react")}
      >
        <SmileIcon className="h-4 w-4" />
      </button>
      <button type="button" className={toolButton} aria-label="Reply" title="Reply" onClick={() => actions.reply(m)}>
        <ReplyIcon className="h-4 w-4" />
      </button>
      {items.length ? (
        <button
          type="button"
          className={toolButton}
          aria-label="More actions"
          title="More actions"
          aria-haspopup="menu"
          aria-expanded={open === "menu"}
          onClick={() => setOpen(open === "menu" ? null : "menu")}
        >
          <MoreIcon className="h-4 w-4" />
        </button>
      ) : null}
      {open === "react" ? (
        <div role="group" aria-label="Pick a reaction" className="absolute right-0 top-9 flex gap-0.5 rounded-lg bg-white p-1 shadow-lg ring-1 ring-slate-200">
          {QUICK_REACTIONS.map((emoji) => (
            <button
              key={emoji}
              type="button"
              aria-label={`React with ${emoji}`}
              onClick={() => {
                setOpen(null);
                actions.react(m, emoji);
              }}
              className="h-8 w-8 rounded-md text-lg hover:bg-slate-100 focus-visible:outline-2 focus-visible:outline-brand-600"
            >
              {emoji}
            </button>
          ))}
        </div>
      ) : null}
      {open === "menu" ? (
        <ul role="menu" aria-label="Message" className="absolute right-0 top-9 w-64 rounded-lg bg-white py-1 shadow-lg ring-1 ring-slate-200">
          {items.map((item) => (
            <li key={item.label} role="none">
              <button
                type="button"
                role="menuitem"
                onClick={() => {
                  setOpen(null);
                  item.run();
                }}
                className={`flex w-full items-center gap-2 px-3 py-1.5 text-left text-sm hover:bg-slate-50 focus-visible:bg-slate-50 focus-visible:outline-none ${
                  item.danger ? "text-rose-700" : "text-slate-700"
                }`}
              >
                {item.icon}
                {item.label}
              </button>
            </li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}

function MessageShell({
  sender,
  createdAt,
  showHeader,
  mine,
  children,
  status,
  messageId,
  highlight,
  toolbar,
}: {
  sender: string;
  createdAt: string;
  showHeader: boolean;
  mine: boolean;
  children: React.ReactNode;
  status?: React.ReactNode;
  messageId?: string;
  highlight?: boolean;
  toolbar?: React.ReactNode;
}) {
  const at = new Date(createdAt);
  const time = timeLabel(at);
  return (
    <li
      data-message-id={messageId}
      className={`group relative flex gap-3 rounded-lg px-2 ${
        highlight ? "bg-amber-50 shadow-[inset_3px_0_0] shadow-amber-400 hover:bg-amber-100/70" : "hover:bg-slate-50"
      } ${showHeader ? "mt-3 pt-1 pb-0.5" : "py-0.5"}`}
    >
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
      {toolbar}
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
function MessageBody({ text, file, muted, me, edited }: { text: string; file?: FileRef; muted?: boolean; me?: string; edited?: string }) {
  const onlyName = file !== undefined && text.trim() === file.name.trim();
  return (
    <>
      {onlyName ? null : (
        <p className={`whitespace-pre-wrap break-words text-[15px] leading-relaxed ${muted ? "text-slate-500" : "text-slate-800"}`}>
          <MessageText text={text} me={me} />
          {edited ? (
            <span className="ml-1.5 text-xs text-slate-400" title={`Edited ${new Date(edited).toLocaleString()}`}>
              (edited)
            </span>
          ) : null}
        </p>
      )}
      {file ? <FileAttachment file={file} /> : null}
    </>
  );
}

/** Text with `@name` mentions set apart, and the reader's own name most of all. */
function MessageText({ text, me }: { text: string; me?: string }) {
  const parts = useMemo(() => splitMentions(text), [text]);
  if (parts.length === 1 && !parts[0]!.mention) return <span>{text}</span>;
  const mine = me?.toLowerCase();
  return (
    <span>
      {parts.map((p, i) =>
        p.mention ? (
          <span
            key={i}
            className={`rounded px-0.5 font-medium ${p.mention.toLowerCase() === mine ? "bg-amber-200 text-amber-900" : "bg-brand-50 text-brand-700"}`}
          >
            {p.text}
          </span>
        ) : (
          p.text
        ),
      )}
    </span>
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
  onJump,
  onRetry,
  onDiscard,
}: {
  o: Outgoing;
  user: User;
  showHeader: boolean;
  blocked: boolean;
  onJump: (id: string) => boolean;
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
      {o.reply_to ? <QuoteView quote={o.reply_to} onJump={onJump} /> : null}
      <div aria-label={failed ? "Message not sent" : "Message pending"}>
        <MessageBody text={o.text} file={o.file} muted />
      </div>
    </MessageShell>
  );
}
