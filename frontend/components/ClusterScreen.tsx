"use client";

import { useEffect, useRef, useState, type ReactNode } from "react";
import { api, ApiError } from "@/lib/api";
import type { ConnectionStatus } from "@/lib/chat";
import {
  ClusterPoller,
  clusterTotals,
  dependencyName,
  drainError,
  drainQuestion,
  formatAge,
  formatCount,
  formatCpu,
  formatLatency,
  formatLoad,
  formatMiB,
  formatRate,
  isLate,
  moderationAction,
  moderationTarget,
  plural,
  asSentence,
  type ClusterPollState,
  type ClusterView,
  type InstanceView,
} from "@/lib/cluster";
import { ConnectionBadge } from "./ConnectionBadge";
import { ConfirmDialog, type Confirmation } from "./ConversationDialogs";
import { AlertIcon, ArrowLeftIcon, HashIcon, MenuIcon } from "./icons";

/** How long a requested drain (or undrain) shows as under way while the reports catch up. */
const REQUEST_SHOWN_MS = 10_000;

/**
 * Polls `GET /api/admin/cluster` every 2 s while the page is shown, not while the tab is hidden,
 * and never after it is gone.
 */
function useClusterPoll() {
  const [state, setState] = useState<ClusterPollState | null>(null);
  const poller = useRef<ClusterPoller | null>(null);
  useEffect(() => {
    const p = new ClusterPoller(() => api.cluster(), setState);
    poller.current = p;
    const onVisibility = () => (document.visibilityState === "hidden" ? p.stop() : p.start());
    onVisibility();
    document.addEventListener("visibilitychange", onVisibility);
    return () => {
      document.removeEventListener("visibilitychange", onVisibility);
      p.stop();
      poller.current = null;
    };
  }, []);
  return { state, refresh: () => poller.current?.refresh() };
}

/** The clock of the page, a tick a second (report ages, the next attempt). */
function useClock(): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  return now;
}

const card = "rounded-xl bg-white ring-1 ring-slate-200";
// Compact enough for the instances' twelve columns to fit beside the sidebar on a laptop;
// headings may wrap, figures do not.
const th = "px-2.5 py-2 text-left align-bottom text-xs font-semibold text-slate-500";
const thNum = `${th} text-right`;
const td = "px-2.5 py-2 text-sm text-slate-700 whitespace-nowrap";
const tdNum = `${td} text-right tabular-nums`;

/** A heading and what it heads, labelled by it. */
function Section({ id, title, children }: { id: string; title: string; children: ReactNode }) {
  return (
    <section aria-labelledby={id} className="space-y-2">
      <h2 id={id} className="text-sm font-semibold text-slate-900">
        {title}
      </h2>
      {children}
    </section>
  );
}

/** A table that scrolls sideways on a narrow screen (reachable by keyboard). */
function Scroller({ label, children }: { label: string; children: ReactNode }) {
  return (
    // The region takes focus so that a keyboard can scroll it. It is positioned, so that what is
    // positioned inside it (screen-reader-only text) scrolls with it instead of widening the page.
    <div
      role="region"
      aria-label={label}
      tabIndex={0}
      className={`${card} relative overflow-x-auto focus-visible:outline-2 focus-visible:outline-brand-600`}
    >
      {children}
    </div>
  );
}

function Badge({ tone, children }: { tone: "amber" | "emerald" | "rose" | "slate" | "brand"; children: ReactNode }) {
  const tones = {
    amber: "bg-amber-50 text-amber-800 ring-amber-200",
    emerald: "bg-emerald-50 text-emerald-700 ring-emerald-200",
    rose: "bg-rose-50 text-rose-700 ring-rose-200",
    slate: "bg-slate-50 text-slate-600 ring-slate-200",
    brand: "bg-brand-50 text-brand-700 ring-brand-100",
  };
  return <span className={`inline-flex items-center rounded-full px-2 py-0.5 text-xs font-medium ring-1 ring-inset ${tones[tone]}`}>{children}</span>;
}

/**
 * The live cluster page of administrators: every instance's last report (with a drain button
 * each), the cluster's totals, the busiest channels, the dependencies' health, instances that
 * stopped reporting and the newest moderation log entries.
 *
 * It is a view of the chat screen rather than a route of its own: the tab keeps its one
 * Socket.IO connection while it is open (the administrator stays online, mentions and
 * messages keep arriving, and a drain of their own instance moves them like anyone else), the
 * session check and sign-out stay in one place, and the sidebar (a drawer on a phone) leads
 * back to any channel. Only administrators are offered it; the server refuses the figures to
 * anyone else.
 */
export function ClusterScreen({
  status,
  moving,
  onBack,
  onOpenMenu,
  onSessionEnded,
}: {
  status: ConnectionStatus;
  moving: boolean;
  onBack: () => void;
  onOpenMenu: () => void;
  /** A request was refused because the session is over. */
  onSessionEnded: (e: unknown) => void;
}) {
  const { state, refresh } = useClusterPoll();
  const now = useClock();
  const [confirmation, setConfirmation] = useState<Confirmation | null>(null);
  const [requested, setRequested] = useState<Record<string, { draining: boolean; at: number }>>({});
  const [actionError, setActionError] = useState<string | null>(null);

  const ended = state?.ended;
  const endedBy = state?.endedBy;
  useEffect(() => {
    if (ended === "signed-out") onSessionEnded(endedBy);
  }, [ended, endedBy, onSessionEnded]);

  const view = state?.view ?? null;

  function askDrain(instance: InstanceView, drain: boolean) {
    if (!view) return;
    const question = drainQuestion(view, instance, drain);
    setConfirmation({
      ...question,
      action: drain ? "Drain" : "Undrain",
      tone: drain ? "danger" : "primary",
      run: async () => {
        setActionError(null);
        try {
          await (drain ? api.drain(instance.id) : api.undrain(instance.id));
          setRequested((r) => ({ ...r, [instance.id]: { draining: drain, at: Date.now() } }));
          refresh();
        } catch (e) {
          if (e instanceof ApiError && e.status === 401) onSessionEnded(e);
          setActionError(drainError(e, instance.id, drain));
        }
      },
    });
  }

  return (
    <main aria-labelledby="cluster-heading" className="flex min-w-0 flex-1 flex-col bg-slate-50/40">
      <header className="flex h-14 shrink-0 items-center gap-2 border-b border-slate-200 bg-white px-3 sm:px-5">
        <button
          type="button"
          onClick={onOpenMenu}
          aria-label="Open channels"
          className="-ml-1 rounded-lg p-2 text-slate-600 hover:bg-slate-100 focus-visible:outline-2 focus-visible:outline-brand-600 md:hidden"
        >
          <MenuIcon className="h-5 w-5" />
        </button>
        <button
          type="button"
          onClick={onBack}
          aria-label="Back to chat"
          title="Back to chat"
          className="hidden rounded-lg p-1.5 text-slate-500 hover:bg-slate-100 hover:text-slate-700 focus-visible:outline-2 focus-visible:outline-brand-600 md:inline-flex"
        >
          <ArrowLeftIcon className="h-5 w-5" />
        </button>
        <h1 id="cluster-heading" className="min-w-0 flex-1 truncate text-base font-semibold text-slate-900">
          Cluster
        </h1>
        <ConnectionBadge status={status} moving={moving} />
      </header>

      <div className="min-h-0 flex-1 space-y-6 overflow-y-auto p-3 sm:p-5">
        <p className="text-xs text-slate-500">
          {/* Only the time is announced (politely) when it changes. */}
          <span aria-live="polite" aria-atomic="true">
            {state?.updatedAt ? (
              <>
                Updated <time dateTime={new Date(state.updatedAt).toISOString()}>{new Date(state.updatedAt).toLocaleTimeString()}</time>
              </>
            ) : ended ? null : (
              "Loading…"
            )}
          </span>
          {view ? (
            <>
              {" "}
              · answered by <span className="break-all font-mono">{view.answered_by}</span>
            </>
          ) : null}
        </p>

        {ended === "forbidden" ? (
          <div role="alert" className="flex items-center gap-3 rounded-xl bg-rose-50 px-4 py-3 text-sm text-rose-800 ring-1 ring-rose-200">
            <AlertIcon className="h-4 w-4 shrink-0" />
            <p>Only administrators can see the cluster.</p>
          </div>
        ) : null}

        {state?.error && !ended ? (
          <div className="flex flex-wrap items-center gap-x-3 gap-y-1 rounded-xl bg-amber-50 px-4 py-3 text-sm text-amber-900 ring-1 ring-amber-200">
            <AlertIcon className="h-4 w-4 shrink-0 text-amber-600" />
            <p role="alert" className="min-w-0 flex-1">
              The figures could not be updated: {asSentence(state.error)}
              {view ? " The last ones are shown." : ""}
            </p>
            {state.nextAt !== null ? (
              <span className="tabular-nums text-amber-800">Trying again in {Math.max(1, Math.ceil((state.nextAt - now) / 1000))} s</span>
            ) : null}
            <button type="button" onClick={refresh} className="font-semibold hover:underline">
              Try now
            </button>
          </div>
        ) : null}

        {actionError ? (
          <div className="flex items-center gap-3 rounded-xl bg-rose-50 px-4 py-3 text-sm text-rose-800 ring-1 ring-rose-200">
            <AlertIcon className="h-4 w-4 shrink-0" />
            <p role="alert" className="flex-1">
              {actionError}
            </p>
            <button type="button" onClick={() => setActionError(null)} className="font-semibold hover:underline">
              Dismiss
            </button>
          </div>
        ) : null}

        {view ? <ClusterFigures view={view} now={now} requested={requested} onDrain={askDrain} /> : null}
      </div>

      <ConfirmDialog confirmation={confirmation} onClose={() => setConfirmation(null)} />
    </main>
  );
}

function ClusterFigures({
  view,
  now,
  requested,
  onDrain,
}: {
  view: ClusterView;
  now: number;
  requested: Record<string, { draining: boolean; at: number }>;
  onDrain: (instance: InstanceView, drain: boolean) => void;
}) {
  const totals = clusterTotals(view);
  return (
    <>
      <Section id="cluster-totals" title="Totals">
        <dl className="grid grid-cols-2 gap-3 sm:grid-cols-3 xl:grid-cols-5">
          <Total label="Instances" value={formatCount(totals.instances)} hint={totals.draining ? `${formatCount(totals.draining)} draining` : undefined} />
          <Total label="Sockets" value={formatCount(totals.sockets)} hint={`of ${formatCount(totals.capacity)}`} />
          <Total label="Users online" value={formatCount(totals.online)} />
          <Total label="Deliveries/s" value={formatRate(totals.deliveriesPerSec)} />
          <Total label="Drops/s" value={formatRate(totals.dropsPerSec)} alarm={totals.dropsPerSec > 0} />
        </dl>
      </Section>

      <Section id="cluster-instances" title="Instances">
        <Scroller label="Instances table">
          <table className="w-full border-collapse">
            <caption className="sr-only">Instances</caption>
            <thead className="border-b border-slate-200 bg-slate-50/60">
              <tr>
                <th scope="col" className={th}>Instance</th>
                <th scope="col" className={thNum}>Sockets / capacity</th>
                <th scope="col" className={thNum}>Users</th>
                <th scope="col" className={thNum}>CPU</th>
                <th scope="col" className={thNum}>RSS</th>
                <th scope="col" className={thNum}>Deliveries/s</th>
                <th scope="col" className={thNum}>Drops/s</th>
                <th scope="col" className={thNum}>Moved</th>
                <th scope="col" className={thNum}>Weight</th>
                <th scope="col" className={th}>Status</th>
                <th scope="col" className={th}>Last report</th>
                <th scope="col" className={th}>
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody className="divide-y divide-slate-100">
              {view.instances.map((i) => (
                <InstanceRow key={i.id} instance={i} now={now} request={requested[i.id]} onDrain={onDrain} />
              ))}
              {view.instances.length === 0 ? (
                <tr>
                  <td colSpan={12} className={`${td} text-slate-500`}>
                    No instance is reporting.
                  </td>
                </tr>
              ) : null}
            </tbody>
          </table>
        </Scroller>
      </Section>

      <div className="grid gap-6 lg:grid-cols-2">
        <Section id="cluster-channels" title="Busiest channels">
          <Scroller label="Busiest channels table">
            <table className="w-full border-collapse">
              <caption className="sr-only">Busiest channels</caption>
              <thead className="border-b border-slate-200 bg-slate-50/60">
                <tr>
                  <th scope="col" className={th}>Channel</th>
                  <th scope="col" className={thNum}>Online</th>
                  <th scope="col" className={thNum}>Sockets</th>
                  <th scope="col" className={thNum}>Messages/s</th>
                </tr>
              </thead>
              <tbody className="divide-y divide-slate-100">
                {view.channels.map((c) => (
                  <tr key={c.name}>
                    <th scope="row" className={`${td} text-left font-medium text-slate-900`}>
                      <span className="inline-flex items-center gap-1">
                        <HashIcon className="h-3.5 w-3.5 shrink-0 text-slate-400" />
                        {c.name}
                      </span>
                    </th>
                    <td className={tdNum}>{c.online === undefined ? "—" : formatCount(c.online)}</td>
                    <td className={tdNum}>{formatCount(c.sockets)}</td>
                    <td className={tdNum}>{formatRate(c.messages_per_sec)}</td>
                  </tr>
                ))}
                {view.channels.length === 0 ? (
                  <tr>
                    <td colSpan={4} className={`${td} text-slate-500`}>
                      No channel has anyone in it.
                    </td>
                  </tr>
                ) : null}
              </tbody>
            </table>
          </Scroller>
        </Section>

        <div className="space-y-6">
          <Section id="cluster-dependencies" title="Dependencies">
            <ul className={`${card} divide-y divide-slate-100`}>
              {view.dependencies.map((d) => (
                <li key={d.name} className="flex items-center gap-3 px-4 py-2.5 text-sm">
                  <span className="flex-1 font-medium text-slate-900">{dependencyName(d.name)}</span>
                  {d.ok ? <Badge tone="emerald">OK</Badge> : <Badge tone="rose">Down</Badge>}
                  <span className="w-20 text-right tabular-nums text-slate-500">{d.ok ? formatLatency(d.latency_ms) : "no answer"}</span>
                </li>
              ))}
            </ul>
          </Section>

          <Section id="cluster-silent" title="Silent instances">
            {view.silent.length === 0 ? (
              <p className="text-sm text-slate-500">Every registered instance is reporting.</p>
            ) : (
              <>
                <p className="text-sm text-slate-600">Registered, but sent no report (just started, or gone):</p>
                <ul className={`${card} divide-y divide-slate-100`}>
                  {view.silent.map((id) => (
                    <li key={id} className="break-all px-4 py-2 font-mono text-sm text-slate-700">
                      {id}
                    </li>
                  ))}
                </ul>
              </>
            )}
          </Section>
        </div>
      </div>

      <Section id="cluster-moderation" title="Moderation log">
        {view.moderation.length === 0 ? (
          <p className="text-sm text-slate-500">No moderation actions yet.</p>
        ) : (
          <Scroller label="Moderation log table">
            <table className="w-full border-collapse">
              <caption className="sr-only">Moderation log</caption>
              <thead className="border-b border-slate-200 bg-slate-50/60">
                <tr>
                  <th scope="col" className={th}>When</th>
                  <th scope="col" className={th}>By</th>
                  <th scope="col" className={th}>Action</th>
                  <th scope="col" className={th}>Channel</th>
                  <th scope="col" className={th}>Target</th>
                </tr>
              </thead>
              <tbody className="divide-y divide-slate-100">
                {view.moderation.map((m) => (
                  <tr key={m.id}>
                    <td className={td}>
                      <time dateTime={m.at}>{new Date(m.at).toLocaleString()}</time>
                    </td>
                    <td className={td}>{m.actor}</td>
                    <td className={td}>{moderationAction(m.action)}</td>
                    <td className={td}>{m.channel ? `#${m.channel}` : "—"}</td>
                    <td className={td}>{moderationTarget(m)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </Scroller>
        )}
      </Section>
    </>
  );
}

function Total({ label, value, hint, alarm = false }: { label: string; value: string; hint?: string; alarm?: boolean }) {
  return (
    <div className={`${card} px-4 py-3`}>
      <dt className="text-xs font-medium text-slate-500">{label}</dt>
      <dd className={`mt-1 text-2xl font-semibold tabular-nums ${alarm ? "text-rose-700" : "text-slate-900"}`}>{value}</dd>
      {hint ? <dd className="text-xs text-slate-500">{hint}</dd> : null}
    </div>
  );
}

function InstanceRow({
  instance: i,
  now,
  request,
  onDrain,
}: {
  instance: InstanceView;
  now: number;
  request?: { draining: boolean; at: number };
  onDrain: (instance: InstanceView, drain: boolean) => void;
}) {
  // A drain asked for shows as under way until the instance reports it (or for a while).
  const pending = request !== undefined && request.draining !== i.draining && now - request.at < REQUEST_SHOWN_MS;
  const draining = pending ? request.draining : i.draining;
  const late = isLate(i.reported_at, now);
  const full = i.capacity > 0 ? Math.min(1, i.sockets / i.capacity) : 0;
  return (
    <tr className={i.draining ? "bg-amber-50/40" : undefined}>
      <th
        scope="row"
        className="max-w-44 break-all px-2.5 py-2 text-left font-mono text-[13px] font-medium text-slate-900"
        title={`version ${i.version}, started ${new Date(i.started_at).toLocaleString()}`}
      >
        {i.id}
      </th>
      <td className={tdNum}>
        <span className={full >= 0.9 ? "font-semibold text-rose-700" : undefined}>{formatLoad(i.sockets, i.capacity)}</span>
      </td>
      <td className={tdNum}>{formatCount(i.users)}</td>
      <td className={tdNum} title={`${i.cpu.toFixed(2)} of ${plural(i.cores, "core")}`}>
        {formatCpu(i.cpu, i.cores)}
      </td>
      <td className={tdNum}>{formatMiB(i.rss_bytes)}</td>
      <td className={tdNum}>{formatRate(i.deliveries_per_sec)}</td>
      <td className={tdNum} title={`${formatCount(i.drops)} dropped since it started`}>
        <span className={i.drops_per_sec > 0 ? "font-semibold text-rose-700" : undefined}>{formatRate(i.drops_per_sec)}</span>
      </td>
      <td className={tdNum}>{formatCount(i.moved)}</td>
      <td className={tdNum}>{`${formatCount(i.weight)}%`}</td>
      <td className={td}>
        {pending ? (
          <Badge tone="brand">{request.draining ? "Draining…" : "Resuming…"}</Badge>
        ) : i.draining ? (
          <Badge tone="amber">Draining</Badge>
        ) : (
          <Badge tone="slate">Serving</Badge>
        )}
      </td>
      <td className={td}>
        <span className={late ? "font-semibold text-amber-700" : undefined}>{formatAge(i.reported_at, now)}</span>
        {late ? (
          <>
            {" "}
            <Badge tone="amber">Late</Badge>
          </>
        ) : null}
      </td>
      <td className={`${td} text-right`}>
        <button
          type="button"
          onClick={() => onDrain(i, !draining)}
          disabled={pending}
          aria-label={`${draining ? "Undrain" : "Drain"} ${i.id}`}
          className={`rounded-lg px-3 py-1 text-xs font-semibold ring-1 ring-inset focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-brand-600 disabled:opacity-60 ${
            draining ? "text-brand-700 ring-brand-100 hover:bg-brand-50" : "text-rose-700 ring-rose-200 hover:bg-rose-50"
          }`}
        >
          {draining ? "Undrain" : "Drain"}
        </button>
      </td>
    </tr>
  );
}
