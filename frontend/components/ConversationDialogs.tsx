"use client";

import { useState, type FormEvent } from "react";
import { Dialog } from "./Dialog";
import { Field } from "./Field";

const primary =
  "rounded-lg bg-brand-600 px-4 py-2 text-sm font-semibold text-white shadow-sm hover:bg-brand-700 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-brand-600 disabled:opacity-60";
const danger =
  "rounded-lg bg-rose-600 px-4 py-2 text-sm font-semibold text-white shadow-sm hover:bg-rose-700 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-rose-600 disabled:opacity-60";
const secondary =
  "rounded-lg px-4 py-2 text-sm font-medium text-slate-700 ring-1 ring-slate-300 hover:bg-slate-50 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-brand-600";

type OpenResult = { ok: true } | { ok: false; error: string };

/** Starts a direct conversation with someone, by their username. */
export function NewDmDialog({
  open,
  onClose,
  onOpen,
}: {
  open: boolean;
  onClose: () => void;
  onOpen: (username: string) => Promise<OpenResult>;
}) {
  return (
    <Dialog open={open} onClose={onClose} title="New direct message" description="Talk with one person, just the two of you.">
      {open ? <NewDmForm onClose={onClose} onOpen={onOpen} /> : null}
    </Dialog>
  );
}

function NewDmForm({ onClose, onOpen }: { onClose: () => void; onOpen: (username: string) => Promise<OpenResult> }) {
  const [username, setUsername] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    if (!username.trim()) {
      setError("Enter a username.");
      return;
    }
    setBusy(true);
    const result = await onOpen(username);
    setBusy(false);
    if (result.ok) onClose();
    else setError(result.error);
  }

  return (
    <form onSubmit={submit} noValidate className="space-y-4">
      <Field
        label="Username"
        value={username}
        onChange={(e) => setUsername(e.target.value)}
        placeholder="e.g. ada"
        error={error}
        maxLength={32}
        autoComplete="off"
        autoFocus
      />
      <div className="flex justify-end gap-2 pt-2">
        <button type="button" onClick={onClose} className={secondary}>
          Cancel
        </button>
        <button type="submit" disabled={busy} className={primary}>
          Start conversation
        </button>
      </div>
    </form>
  );
}

export interface Confirmation {
  title: string;
  description: string;
  /** The words on the button that does it. */
  action: string;
  /** How the button looks: red for what cannot be undone (the default), else the usual blue. */
  tone?: "danger" | "primary";
  run: () => Promise<unknown> | void;
}

/** Asks before something that cannot be undone (a delete, a removal, a ban) or that disturbs others (a drain). */
export function ConfirmDialog({ confirmation, onClose }: { confirmation: Confirmation | null; onClose: () => void }) {
  const [busy, setBusy] = useState(false);
  return (
    <Dialog open={confirmation !== null} onClose={onClose} title={confirmation?.title ?? ""} description={confirmation?.description}>
      {confirmation ? (
        <div className="flex justify-end gap-2">
          <button type="button" onClick={onClose} className={secondary}>
            Cancel
          </button>
          <button
            type="button"
            disabled={busy}
            autoFocus
            className={confirmation.tone === "primary" ? primary : danger}
            onClick={async () => {
              setBusy(true);
              try {
                await confirmation.run();
              } finally {
                setBusy(false);
                onClose();
              }
            }}
          >
            {confirmation.action}
          </button>
        </div>
      ) : null}
    </Dialog>
  );
}
