"use client";

import { useId, useRef, useState, type KeyboardEvent } from "react";
import { draftLength, MAX_MESSAGE_CHARS } from "@/lib/timeline";
import { SendIcon } from "./icons";

/**
 * The message box: Enter sends, Shift+Enter breaks the line. A counter shows up near the
 * 4,000-character limit, and a draft over it cannot be sent.
 */
export function Composer({
  channel,
  disabled,
  onSend,
  onTyping,
}: {
  channel: string;
  disabled: boolean;
  onSend: (text: string) => void;
  onTyping: (hasText: boolean) => void;
}) {
  const [text, setText] = useState("");
  const area = useRef<HTMLTextAreaElement>(null);
  const id = useId();
  const { count, showCounter, over } = draftLength(text);
  const canSend = count > 0 && !over && !disabled;

  function send() {
    if (!canSend) return;
    onSend(text);
    setText("");
    area.current?.focus();
  }

  function onKeyDown(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      send();
    }
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
            Message #{channel}
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
        <div className="flex items-end gap-2 p-2 pt-1">
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
            aria-describedby={showCounter ? `${id}-count` : undefined}
            aria-invalid={over || undefined}
            placeholder={`Write to #${channel}`}
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
