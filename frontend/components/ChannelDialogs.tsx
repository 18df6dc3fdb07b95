"use client";

import { useState, type FormEvent } from "react";
import { Dialog } from "./Dialog";
import { Field } from "./Field";

const primary =
  "rounded-lg bg-brand-600 px-4 py-2 text-sm font-semibold text-white shadow-sm hover:bg-brand-700 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-brand-600 disabled:opacity-60";
const secondary =
  "rounded-lg px-4 py-2 text-sm font-medium text-slate-700 ring-1 ring-slate-300 hover:bg-slate-50 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-brand-600";

type CreateResult = { ok: true } | { ok: false; fieldErrors: Record<string, string>; message: string };

/** Creates a channel, public or private with a password. */
export function CreateChannelDialog({
  open,
  onClose,
  onCreate,
}: {
  open: boolean;
  onClose: () => void;
  onCreate: (name: string, description: string, password: string) => Promise<CreateResult>;
}) {
  return (
    <Dialog open={open} onClose={onClose} title="Create a channel" description="Channels are where conversations happen.">
      {open ? <CreateChannelForm onClose={onClose} onCreate={onCreate} /> : null}
    </Dialog>
  );
}

function CreateChannelForm({
  onClose,
  onCreate,
}: {
  onClose: () => void;
  onCreate: (name: string, description: string, password: string) => Promise<CreateResult>;
}) {
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [isPrivate, setPrivate] = useState(false);
  const [password, setPassword] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const clean = name.trim().toLowerCase();
    if (!/^[a-z0-9_-]{1,64}$/.test(clean)) {
      setErrors({ name: "Use 1 to 64 lowercase letters, digits, - or _." });
      return;
    }
    if (isPrivate && (password.length < 8 || password.length > 128)) {
      setErrors({ password: "A channel password needs 8 to 128 characters." });
      return;
    }
    setBusy(true);
    const result = await onCreate(clean, description, isPrivate ? password : "");
    setBusy(false);
    if (result.ok) onClose();
    else setErrors(Object.keys(result.fieldErrors).length ? result.fieldErrors : { form: result.message });
  }

  return (
    <form onSubmit={submit} noValidate className="space-y-4">
      <Field
        label="Channel name"
        value={name}
        onChange={(e) => setName(e.target.value.toLowerCase().replace(/\s+/g, "-"))}
        placeholder="e.g. design-review"
        hint="Lowercase letters, digits, - and _."
        error={errors.name}
        maxLength={64}
        autoFocus
      />
      <Field
        label="Description (optional)"
        value={description}
        onChange={(e) => setDescription(e.target.value)}
        placeholder="What is it about?"
        error={errors.description}
        maxLength={280}
      />
      <label className="flex cursor-pointer items-start gap-3 rounded-lg p-3 ring-1 ring-slate-200 hover:bg-slate-50">
        <input
          type="checkbox"
          checked={isPrivate}
          onChange={(e) => setPrivate(e.target.checked)}
          className="mt-0.5 h-4 w-4 rounded border-slate-300 accent-brand-600"
        />
        <span>
          <span className="block text-sm font-medium text-slate-800">Private channel</span>
          <span className="block text-xs text-slate-500">People need a password to join.</span>
        </span>
      </label>
      {isPrivate ? (
        <Field
          label="Channel password"
          type="password"
          autoComplete="new-password"
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          hint="8 to 128 characters. Share it with the people you invite."
          error={errors.password}
        />
      ) : null}
      {errors.form ? (
        <p role="alert" className="text-sm text-rose-600">
          {errors.form}
        </p>
      ) : null}
      <div className="flex justify-end gap-2 pt-2">
        <button type="button" onClick={onClose} className={secondary}>
          Cancel
        </button>
        <button type="submit" disabled={busy} className={primary}>
          Create channel
        </button>
      </div>
    </form>
  );
}

/** Asks for a private channel's password. */
export function PasswordDialog({
  channel,
  error,
  onSubmit,
  onClose,
}: {
  channel: string | null;
  error: string | null;
  onSubmit: (password: string) => void;
  onClose: () => void;
}) {
  return (
    <Dialog
      open={channel !== null}
      onClose={onClose}
      title={`#${channel ?? ""} is private`}
      description="Enter the channel password to join."
    >
      {channel !== null ? <PasswordForm key={channel} error={error} onSubmit={onSubmit} onClose={onClose} /> : null}
    </Dialog>
  );
}

function PasswordForm({
  error,
  onSubmit,
  onClose,
}: {
  error: string | null;
  onSubmit: (password: string) => void;
  onClose: () => void;
}) {
  const [password, setPassword] = useState("");
  return (
    <form
      noValidate
      onSubmit={(e) => {
        e.preventDefault();
        if (password) onSubmit(password);
      }}
      className="space-y-4"
    >
      <Field
        label="Channel password"
        type="password"
        autoComplete="off"
        value={password}
        onChange={(e) => setPassword(e.target.value)}
        error={error}
        autoFocus
      />
      <div className="flex justify-end gap-2">
        <button type="button" onClick={onClose} className={secondary}>
          Cancel
        </button>
        <button type="submit" disabled={!password} className={primary}>
          Join channel
        </button>
      </div>
    </form>
  );
}
