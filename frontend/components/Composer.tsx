"use client";

import { useEffect, useId, useImperativeHandle, useRef, useState, type ClipboardEvent, type KeyboardEvent, type Ref } from "react";
import { ApiError } from "@/lib/api";
import { fileKind, formatBytes } from "@/lib/files";
import { draftLength, MAX_MESSAGE_CHARS } from "@/lib/timeline";
import type { FileRef, Message } from "@/lib/types";
import type { Upload, UploadProgress } from "@/lib/uploads";
import { AlertIcon, CloseIcon, FileIcon, ImageIcon, PaperclipIcon, ReplyIcon, SendIcon } from "./icons";

/** What the chat screen may do to the composer: attach a file dropped on the pane. */
export interface ComposerHandle {
  attach(file: File): void;
}

/**
 * The file attached to the draft: uploading (its progress; `sendWhenDone` once Send was
 * pressed before the upload finished), uploaded and ready to go with the message, or refused.
 */
type Attachment = { id: number; name: string; size: number; type: string } & (
  | { status: "uploading"; loaded: number; total: number; upload: Upload; sendWhenDone: boolean }
  | { status: "ready"; file: FileRef }
  | { status: "failed"; error: string }
);

/**
 * The message box: Enter sends, Shift+Enter breaks the line. A counter shows up near the
 * 4,000-character limit, and a draft over it cannot be sent. A file can be attached with the
 * paperclip, by pasting it, or by dropping it on the chat (through `ref`); it uploads at once,
 * and goes out with the message (a Send pressed during the upload waits for it).
 */
export function Composer({
  channel,
  disabled,
  replyTo,
  onCancelReply,
  onSend,
  onTyping,
  onUpload,
  ref,
}: {
  /** How the conversation is named: `#name`, or `@person` for a direct message. */
  channel: string;
  disabled: boolean;
  /** The message the next one answers, quoted above the box. */
  replyTo?: Message | null;
  onCancelReply?: () => void;
  onSend: (text: string, file?: FileRef) => void;
  onTyping: (hasText: boolean) => void;
  onUpload: (file: File, onProgress: (progress: UploadProgress) => void) => Upload;
  ref?: Ref<ComposerHandle>;
}) {
  const [text, setText] = useState("");
  const [attachment, setAttachment] = useState<Attachment | null>(null);
  const area = useRef<HTMLTextAreaElement>(null);
  const picker = useRef<HTMLInputElement>(null);
  const nextId = useRef(0);
  /** The text sent with the file once its upload finishes (Send pressed during the upload). */
  const waiting = useRef<string | null>(null);
  const id = useId();
  const { count, showCounter, over } = draftLength(text);
  const uploading = attachment?.status === "uploading" ? attachment : null;
  const hasFile = attachment?.status === "ready" || (uploading !== null && !uploading.sendWhenDone);
  const canSend = (count > 0 || hasFile) && !over && !disabled && !uploading?.sendWhenDone;

  // An upload still running when the composer goes (another channel) is stopped.
  const running = uploading?.upload ?? null;
  useEffect(() => () => running?.cancel(), [running]);

  function attach(file: File) {
    if (disabled) return;
    if (uploading) uploading.upload.cancel();
    waiting.current = null;
    const key = ++nextId.current;
    const upload = onUpload(file, (p: UploadProgress) =>
      setAttachment((a) => (a && a.id === key && a.status === "uploading" ? { ...a, loaded: p.loaded, total: p.total } : a)),
    );
    setAttachment({
      id: key,
      name: file.name,
      size: file.size,
      type: file.type,
      status: "uploading",
      loaded: 0,
      total: file.size,
      upload,
      sendWhenDone: false,
    });
    upload.done.then(
      (stored) => {
        if (nextId.current !== key) return;
        const caption = waiting.current;
        waiting.current = null;
        if (caption !== null) {
          onSend(caption, stored);
          setAttachment(null);
        } else {
          setAttachment((a) => (a && a.id === key ? { id: key, name: a.name, size: a.size, type: a.type, status: "ready", file: stored } : a));
        }
      },
      (e: unknown) => {
        if (nextId.current !== key || (e instanceof ApiError && e.code === "cancelled")) return;
        const caption = waiting.current;
        waiting.current = null;
        // The words sent with it come back to the box, to send again or without the file.
        if (caption) setText((t) => (t ? t : caption));
        const error = e instanceof Error ? e.message : "The upload failed. Please try again.";
        setAttachment((a) => (a && a.id === key ? { id: key, name: a.name, size: a.size, type: a.type, status: "failed", error } : a));
      },
    );
    area.current?.focus();
  }

  useImperativeHandle(ref, () => ({ attach }));

  // Answering a message puts the cursor in the box.
  const replyId = replyTo?.id;
  useEffect(() => {
    if (replyId) area.current?.focus();
  }, [replyId]);

  function removeAttachment() {
    ++nextId.current;
    if (uploading) uploading.upload.cancel();
    const caption = waiting.current;
    waiting.current = null;
    if (caption) setText((t) => (t ? t : caption));
    setAttachment(null);
    area.current?.focus();
  }

  function send() {
    if (!canSend) return;
    if (uploading) {
      // Sent as soon as the file is up; the box is free for the next message meanwhile.
      waiting.current = text;
      setAttachment({ ...uploading, sendWhenDone: true });
    } else {
      onSend(text, attachment?.status === "ready" ? attachment.file : undefined);
      setAttachment(null);
    }
    setText("");
    area.current?.focus();
  }

  function onKeyDown(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (e.key === "Escape" && replyTo && onCancelReply) {
      e.preventDefault();
      onCancelReply();
      return;
    }
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      send();
    }
  }

  function onPaste(e: ClipboardEvent<HTMLTextAreaElement>) {
    const file = e.clipboardData.files[0];
    // Rich text copied from a page or a document may carry a picture of itself: that is text.
    if (!file || e.clipboardData.types.includes("text/html")) return;
    e.preventDefault();
    attach(file);
  }

  return (
    <form
      className="shrink-0 px-3 pb-3 sm:px-5 sm:pb-4"
      onSubmit={(e) => {
        e.preventDefault();
        send();
      }}
    >
      <div
        className={`rounded-xl bg-white shadow-sm ring-1 transition focus-within:ring-2 ${
          over ? "ring-rose-300 focus-within:ring-rose-400" : "ring-slate-300 focus-within:ring-brand-500"
        }`}
      >
        <div className="flex items-center justify-between gap-3 px-3 pt-2">
          <label htmlFor={id} className="text-xs font-medium text-slate-500">
            Message {channel}
          </label>
          {showCounter ? (
            <span
              id={`${id}-count`}
              aria-live="polite"
              className={`text-xs tabular-nums ${over ? "font-semibold text-rose-600" : "text-amber-600"}`}
            >
              {count.toLocaleString("en-US")} / {MAX_MESSAGE_CHARS.toLocaleString("en-US")}
              {over ? " — too long" : ""}
            </span>
          ) : (
            <span className="hidden text-xs text-slate-400 sm:inline">
              <kbd className="font-sans">Enter</kbd> to send · <kbd className="font-sans">Shift+Enter</kbd> for a new line
            </span>
          )}
        </div>
        {replyTo ? (
          <div
            role="group"
            aria-label={`Replying to ${replyTo.sender}`}
            className="mx-2 mt-2 flex items-start gap-2 rounded-lg border-l-2 border-brand-500 bg-brand-50/60 px-3 py-1.5"
          >
            <ReplyIcon className="mt-0.5 h-4 w-4 shrink-0 text-brand-600" />
            <div className="min-w-0 flex-1 text-sm">
              <p className="text-xs font-medium text-brand-700">Replying to {replyTo.sender}</p>
              <p className="truncate text-slate-600">{replyTo.text}</p>
            </div>
            <button
              type="button"
              onClick={onCancelReply}
              aria-label="Cancel reply"
              title="Cancel reply"
              className="-mr-1 shrink-0 rounded-md p-1 text-slate-400 hover:bg-slate-200 hover:text-slate-700 focus-visible:outline-2 focus-visible:outline-brand-600"
            >
              <CloseIcon className="h-4 w-4" />
            </button>
          </div>
        ) : null}
        {attachment ? <AttachmentCard attachment={attachment} onRemove={removeAttachment} /> : null}
        <div className="flex items-end gap-2 p-2 pt-1">
          <input
            ref={picker}
            type="file"
            tabIndex={-1}
            aria-hidden="true"
            className="hidden"
            onChange={(e) => {
              const file = e.target.files?.[0];
              // Cleared, so that picking the same file again attaches it again.
              e.target.value = "";
              if (file) attach(file);
            }}
          />
          <button
            type="button"
            onClick={() => picker.current?.click()}
            disabled={disabled}
            aria-label="Attach a file"
            title="Attach a file"
            className="mb-0.5 inline-flex h-9 w-9 shrink-0 items-center justify-center rounded-lg text-slate-500 transition hover:bg-slate-100 hover:text-slate-700 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-brand-600 disabled:text-slate-300 disabled:hover:bg-transparent"
          >
            <PaperclipIcon className="h-[18px] w-[18px]" />
          </button>
          <textarea
            ref={area}
            id={id}
            rows={1}
            value={text}
            onChange={(e) => {
              setText(e.target.value);
              onTyping(e.target.value.trim().length > 0);
            }}
            onKeyDown={onKeyDown}
            onPaste={onPaste}
            aria-describedby={showCounter ? `${id}-count` : undefined}
            aria-invalid={over || undefined}
            placeholder={attachment?.status === "ready" || uploading ? "Add a message (optional)" : `Write to ${channel}`}
            className="field-sizing-content max-h-48 min-h-[2.5rem] flex-1 resize-none bg-transparent px-1.5 py-2 text-[15px] leading-6 text-slate-900 outline-none placeholder:text-slate-400"
          />
          <button
            type="submit"
            disabled={!canSend}
            aria-label="Send"
            title="Send"
            className="mb-0.5 inline-flex h-9 w-9 shrink-0 items-center justify-center rounded-lg bg-brand-600 text-white shadow-sm transition hover:bg-brand-700 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-brand-600 disabled:bg-slate-200 disabled:text-slate-400 disabled:shadow-none"
          >
            <SendIcon className="h-[18px] w-[18px]" />
          </button>
        </div>
      </div>
    </form>
  );
}

/** The attached file: name and size, then its upload's progress, readiness or refusal. */
function AttachmentCard({ attachment: a, onRemove }: { attachment: Attachment; onRemove: () => void }) {
  const Icon = a.type.startsWith("image/") ? ImageIcon : FileIcon;
  const failed = a.status === "failed";
  const percent = a.status === "uploading" && a.total > 0 ? Math.min(100, Math.floor((a.loaded / a.total) * 100)) : 0;
  let state: string;
  if (a.status === "uploading") {
    // Every byte is out: the server is still storing it (and making an image's thumbnail).
    const progress = percent >= 100 ? "Finishing upload…" : `Uploading ${percent}%`;
    state = a.sendWhenDone ? `${progress} — sends when done` : progress;
  }
  else if (a.status === "ready") state = "Ready to send";
  else state = "Not uploaded";
  return (
    <div
      className={`mx-2 mt-2 flex items-start gap-3 rounded-lg px-3 py-2 ring-1 ${failed ? "bg-rose-50 ring-rose-200" : "bg-slate-50 ring-slate-200"}`}
      aria-label={`Attachment: ${a.name}`}
      role="group"
    >
      <span
        className={`mt-0.5 flex h-8 w-8 shrink-0 items-center justify-center rounded-md ${failed ? "bg-rose-100 text-rose-600" : "bg-brand-50 text-brand-600"}`}
        aria-hidden="true"
      >
        {failed ? <AlertIcon className="h-4 w-4" /> : <Icon className="h-4 w-4" />}
      </span>
      <div className="min-w-0 flex-1">
        <p className="flex items-baseline gap-2 text-sm">
          <span className="truncate font-medium text-slate-800">{a.name}</span>
          <span className="shrink-0 text-xs text-slate-500">
            {formatBytes(a.size)} · {fileKind(a.type, a.name)}
          </span>
        </p>
        {failed ? (
          <p role="alert" className="mt-0.5 text-sm font-medium text-rose-700">
            {a.error}
          </p>
        ) : (
          <p className="mt-0.5 text-xs text-slate-500" aria-live="polite">
            {state}
          </p>
        )}
        {a.status === "uploading" ? (
          <div
            role="progressbar"
            aria-label={`Uploading ${a.name}`}
            aria-valuemin={0}
            aria-valuemax={100}
            aria-valuenow={percent}
            className="mt-1.5 h-1.5 overflow-hidden rounded-full bg-slate-200"
          >
            <div className="h-full rounded-full bg-brand-600 transition-[width] duration-200" style={{ width: `${percent}%` }} />
          </div>
        ) : null}
      </div>
      <button
        type="button"
        onClick={onRemove}
        aria-label={a.status === "uploading" ? `Cancel upload of ${a.name}` : `Remove ${a.name}`}
        title={a.status === "uploading" ? "Cancel upload" : "Remove"}
        className="-mr-1 shrink-0 rounded-md p-1 text-slate-400 hover:bg-slate-200 hover:text-slate-700 focus-visible:outline-2 focus-visible:outline-brand-600"
      >
        <CloseIcon className="h-4 w-4" />
      </button>
    </div>
  );
}
