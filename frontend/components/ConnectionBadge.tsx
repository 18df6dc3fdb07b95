import type { ConnectionStatus } from "@/lib/chat";

const look: Record<ConnectionStatus | "moving", { label: string; name: string; dot: string; text: string }> = {
  connected: { label: "Connected", name: "Connected", dot: "bg-emerald-500", text: "text-emerald-700 bg-emerald-50 ring-emerald-200" },
  connecting: { label: "Connecting…", name: "Connecting", dot: "bg-amber-500 typing-dot", text: "text-amber-800 bg-amber-50 ring-amber-200" },
  reconnecting: { label: "Reconnecting…", name: "Reconnecting", dot: "bg-amber-500 typing-dot", text: "text-amber-800 bg-amber-50 ring-amber-200" },
  offline: { label: "Offline", name: "Offline", dot: "bg-rose-500", text: "text-rose-700 bg-rose-50 ring-rose-200" },
  // The server moves the tab to another instance (a drain): nothing is wrong.
  moving: { label: "Moving…", name: "Moving to another server", dot: "bg-brand-500 typing-dot", text: "text-brand-700 bg-brand-50 ring-brand-100" },
};

/** The connection's state, always visible in the channel header. */
export function ConnectionBadge({ status, moving = false }: { status: ConnectionStatus; moving?: boolean }) {
  const l = look[moving && status !== "offline" ? "moving" : status];
  return (
    <span
      role="status"
      aria-label={`Connection: ${l.name}`}
      className={`inline-flex shrink-0 items-center gap-1.5 rounded-full px-2.5 py-1 text-xs font-medium ring-1 ring-inset ${l.text}`}
    >
      <span className={`h-1.5 w-1.5 rounded-full ${l.dot}`} aria-hidden="true" />
      {l.label}
    </span>
  );
}
