import { formatCountdown, secondsLeft } from "@/lib/countdown";
import type { ConnectionStatus } from "@/lib/chat";
import { AlertIcon, ClockIcon, CloseIcon, WifiOffIcon } from "./icons";

/** The user was removed from a channel by its owner or an administrator. */
export function RemovedBanner({ channel, onDismiss }: { channel: string; onDismiss: () => void }) {
  return (
    <div role="alert" className="flex items-center gap-3 border-b border-amber-200 bg-amber-50 px-4 py-2 text-sm text-amber-900">
      <AlertIcon className="h-4 w-4 shrink-0 text-amber-600" />
      <p className="flex-1">
        <span className="font-semibold">You were removed from #{channel}</span> by a moderator.
      </p>
      <button type="button" onClick={onDismiss} aria-label="Dismiss" className="shrink-0 rounded p-0.5 text-amber-700 hover:bg-amber-100">
        <CloseIcon className="h-4 w-4" />
      </button>
    </div>
  );
}

/** Shown while the server refuses sends; the countdown runs down to when sending resumes. */
export function RateLimitBanner({ until, now }: { until: number; now: number }) {
  const left = secondsLeft(until, now);
  return (
    <div role="alert" className="mx-3 mb-2 flex items-center gap-3 rounded-xl bg-amber-50 px-4 py-2.5 text-sm text-amber-900 ring-1 ring-amber-200 sm:mx-5">
      <ClockIcon className="h-5 w-5 shrink-0 text-amber-600" />
      <p className="flex-1">
        <span className="font-semibold">You’re sending messages too fast.</span>{" "}
        <span>
          You can send again in <span className="font-semibold tabular-nums">{formatCountdown(left)}</span>; waiting messages
          will go out by themselves.
        </span>
      </p>
    </div>
  );
}

/**
 * Shown while the connection is down; messages written meanwhile wait and go out after. While
 * the server moves the tab to another instance (a drain), a calm note instead: the connection
 * comes back by itself within moments.
 */
export function ConnectionBanner({ status, moving = false, onRetry }: { status: ConnectionStatus; moving?: boolean; onRetry: () => void }) {
  if (moving && status !== "offline") {
    return (
      <div role="status" className="flex items-center gap-3 border-b border-brand-100 bg-brand-50 px-4 py-2 text-sm text-brand-700">
        <span className="h-2 w-2 shrink-0 rounded-full bg-brand-500 typing-dot" aria-hidden="true" />
        <p className="flex-1">Moving you to another server… You’ll stay in your conversation.</p>
      </div>
    );
  }
  if (status === "connected" || status === "connecting") return null;
  return (
    <div className="flex items-center gap-3 border-b border-rose-100 bg-rose-50 px-4 py-2 text-sm text-rose-800">
      <WifiOffIcon className="h-4 w-4 shrink-0" />
      <p className="flex-1">
        {status === "offline" ? "You’re offline." : "Connection lost."} Reconnecting — messages you write will be sent when
        it’s back.
      </p>
      <button type="button" onClick={onRetry} className="shrink-0 font-semibold hover:underline">
        Retry now
      </button>
    </div>
  );
}
