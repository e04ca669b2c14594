/**
 * nb2flow in JupyterLab 4 and Notebook 7.
 *
 * The front end only displays and edits: every analysis runs in Python, in the nb2flow
 * server extension (`/nb2flow/analyze`, the converter's own code), on the notebook's
 * current, unsaved content. This plugin
 *   - shows on every code cell what nb2flow makes of it (task, module level, setup,
 *     parameters, skipped; names in and out; problems), refreshed after each edit
 *     (debounced, never blocking typing);
 *   - edits a cell's tags with controls that allow only valid values (the grammar comes
 *     from the server: `/nb2flow/grammar`; a flow output's name is checked by the server's
 *     tag grammar: `/nb2flow/tags`), and makes a literal of the cell a flow parameter
 *     (`/nb2flow/literals`, `/nb2flow/parameter`: the server edits, the model takes the
 *     edit as any other, so undo and save work as usual);
 *   - adds "Run as flow" (runs `%nb2flow run` in the notebook's kernel, so the live panel
 *     shows in the notebook), "Convert to script" and "Show flow plan" (a side panel with
 *     the task graph; clicking a task selects its cells), in the palette and the toolbar;
 *   - hands the server the unsaved notebook as a `%nb2flow` cell starts, so the kernel's
 *     magic runs what the user sees (`/nb2flow/snapshot`).
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  Notification,
  ToolbarButton,
  showDialog,
  showErrorMessage
} from '@jupyterlab/apputils';
import { Cell, CodeCell, ICellModel } from '@jupyterlab/cells';
import { URLExt } from '@jupyterlab/coreutils';
import {
  INotebookTracker,
  Notebook,
  NotebookActions,
  NotebookPanel
} from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { PanelLayout, Widget } from '@lumino/widgets';

const PLUGIN_ID = 'nb2flow:plugin';
/** ms of quiet after an edit before the notebook is analysed again */
const DEBOUNCE_MS = 120;
const RUN_SOURCE = '%load_ext nb2flow\n%nb2flow run';
const NB2FLOW_LINE = /^[ \t]*%%?nb2flow\b/m;

namespace CommandIDs {
  export const run = 'nb2flow:run-as-flow';
  export const convert = 'nb2flow:convert';
  export const plan = 'nb2flow:show-plan';
  export const tags = 'nb2flow:edit-tags';
}

// --------------------------------------------------------------------------- server

interface IProblem {
  level: 'error' | 'warning';
  message: string;
}
interface ICellSummary {
  cell: number;
  index: number;
  role: string;
  task: string | null;
  first: boolean;
  last: boolean;
  inputs: string[];
  outputs: string[];
  options: { [key: string]: number | boolean };
  after: string[];
  parameters: string[];
  problems: IProblem[];
}
interface ITaskSummary {
  name: string;
  cells: number[];
  inputs: string[];
  outputs: string[];
}
interface ISummary {
  ok: boolean;
  flow: string;
  cells: ICellSummary[];
  tasks: ITaskSummary[];
  problems: IProblem[];
}
interface IAnalysis {
  summary: ISummary;
  svg: string;
  ms: number;
  cpu_ms: number;
}
interface IOptionSpec {
  tag: string;
  key: string;
  integer: boolean;
  min: number;
  exclusive_min: boolean;
  label: string;
}
interface IGrammar {
  roles: string[];
  named_role: string;
  flags: string[];
  options: IOptionSpec[];
  after: string;
  output: string;
  name_pattern: string;
  keywords: string[];
  ignored: string[];
}

async function api<T>(path: string, body?: unknown, method?: string): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'nb2flow', path);
  const init: RequestInit = body === undefined ? { method: method ?? 'GET' } : {
    method: method ?? 'POST',
    body: JSON.stringify(body)
  };
  const response = await ServerConnection.makeRequest(url, init, settings);
  const data = await response.json();
  if (!response.ok) {
    throw new Error(data.error || data.message || response.statusText);
  }
  return data as T;
}

let grammarPromise: Promise<IGrammar> | null = null;
function grammar(): Promise<IGrammar> {
  if (!grammarPromise) {
    grammarPromise = api<IGrammar>('grammar');
    grammarPromise.catch(() => (grammarPromise = null));
  }
  return grammarPromise;
}

/** The notebook as JSON without outputs: what the analysis reads, small to send. */
function notebookJSON(panel: NotebookPanel): any {
  const nb = panel.content.model!.toJSON() as any;
  for (const cell of nb.cells) {
    if (cell.cell_type === 'code') {
      cell.outputs = [];
    }
  }
  return nb;
}

// --------------------------------------------------------------------------- per notebook

/** Analyses one open notebook after each edit and keeps its cells' badges current. */
class Watcher {
  constructor(readonly panel: NotebookPanel, readonly onUpdate: (w: Watcher) => void) {
    panel.context.ready.then(() => {
      const model = panel.content.model!;
      model.contentChanged.connect(this.schedule, this);
      model.cells.changed.connect(this.hookCells, this);
      this.hookCells();
      this.schedule();
    });
    panel.disposed.connect(() => this.dispose());
  }

  get path(): string {
    return this.panel.context.path;
  }

  /** Analyse now (the benchmark and the tests wait on `analysed`). */
  async refresh(): Promise<void> {
    const notebook = notebookJSON(this.panel);
    // outputs, execution counts and other metadata change all the time while cells run;
    // only what the analysis reads is worth a request
    const key = JSON.stringify([
      this.path,
      notebook.metadata?.kernelspec ?? null,
      notebook.cells.map((c: any) => [c.cell_type, c.source, c.metadata?.tags ?? null])
    ]);
    if (key === this.key && this.analysis) {
      return;
    }
    this.key = key;
    const seq = ++this.seq;
    const ids = this.panel.content.widgets.map(w => w.model.id);
    const started = performance.now();
    let result: IAnalysis;
    try {
      result = await api<IAnalysis>('analyze', { path: this.path, notebook });
    } catch (err) {
      this.key = ''; // try again on the next edit
      if (seq === this.seq) {
        this.error = String(err);
        this.paint(ids, null);
      }
      return;
    }
    if (seq !== this.seq) {
      return; // a newer edit is being analysed
    }
    this.error = '';
    this.analysis = result;
    this.paint(ids, result.summary);
    this.lastRoundTrip = performance.now() - started;
    this.analysed++;
    this.panel.node.dataset.nb2flowAnalysed = String(this.analysed);
    this.onUpdate(this);
  }

  schedule(): void {
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
    }
    this.timer = window.setTimeout(() => {
      this.timer = null;
      void this.refresh();
    }, DEBOUNCE_MS);
  }

  dispose(): void {
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
    }
    watchers.delete(this.panel);
  }

  private hookCells(): void {
    const model = this.panel.content.model;
    if (!model) {
      return;
    }
    for (let i = 0; i < model.cells.length; i++) {
      const cell = model.cells.get(i);
      if (!this.hooked.has(cell)) {
        this.hooked.add(cell);
        cell.metadataChanged.connect(this.schedule, this);
      }
    }
  }

  private paint(ids: string[], summary: ISummary | null): void {
    const byId = new Map<string, ICellSummary>();
    if (summary) {
      ids.forEach((id, i) => byId.set(id, summary.cells[i]));
    }
    for (const cell of this.panel.content.widgets) {
      if (cell.model.type !== 'code') {
        continue;
      }
      const badge = Badge.of(cell, this);
      badge.render(byId.get(cell.model.id) ?? null, this.error);
    }
  }

  analysis: IAnalysis | null = null;
  analysed = 0;
  lastRoundTrip = 0;
  error = '';
  private seq = 0;
  private key = '';
  private timer: number | null = null;
  private hooked = new WeakSet<ICellModel>();
}

const watchers = new Map<NotebookPanel, Watcher>();

// --------------------------------------------------------------------------- badges

const ROLE_TEXT: { [role: string]: string } = {
  module: 'module level',
  setup: 'setup',
  parameters: 'parameters',
  skip: 'skipped',
  nb2flow: 'nb2flow (left out)',
  error: 'not converted',
  empty: 'empty'
};

/** The line above a code cell's editor saying what nb2flow makes of the cell. */
class Badge extends Widget {
  static of(cell: Cell, watcher: Watcher): Badge {
    const layout = cell.layout as PanelLayout;
    let badge = layout.widgets.find(w => w instanceof Badge) as Badge | undefined;
    if (!badge) {
      badge = new Badge(cell, watcher);
      const input = cell.inputArea?.parent;
      const at = input ? layout.widgets.indexOf(input) : 1;
      layout.insertWidget(Math.max(at, 0), badge);
    }
    return badge;
  }

  constructor(readonly cell: Cell, readonly watcher: Watcher) {
    super();
    this.addClass('nb2f-badge');
  }

  private key = '';

  render(info: ICellSummary | null, error: string): void {
    const key = JSON.stringify([info, error]);
    if (key === this.key) {
      return; // unchanged: most cells after an edit elsewhere
    }
    this.key = key;
    const node = this.node;
    node.textContent = '';
    if (!info) {
      node.dataset.role = error ? 'unknown' : 'pending';
      if (error) {
        node.appendChild(span('nb2f-badge-problem nb2f-error', `nb2flow: ${error}`));
      }
      return;
    }
    node.dataset.role = info.role;
    node.dataset.task = info.task ?? '';
    const label =
      info.role === 'task' ? `task ${info.task}${info.first ? '' : ' (cont.)'}` : ROLE_TEXT[info.role] ?? info.role;
    node.appendChild(span(`nb2f-chip nb2f-role-${info.role}`, label));
    const opts = Object.entries(info.options).map(([k, v]) => (v === true ? k : `${k}=${v}`));
    if (info.first && (opts.length || info.after.length)) {
      const after = info.after.map(a => `after ${a}`);
      node.appendChild(span('nb2f-opts', [...opts, ...after].join(' · ')));
    }
    if (info.parameters.length) {
      node.appendChild(span('nb2f-io', `→ ${info.parameters.join(', ')}`));
    }
    if (info.inputs.length) {
      node.appendChild(span('nb2f-io nb2f-in', `in: ${info.inputs.join(', ')}`));
    }
    if (info.outputs.length) {
      node.appendChild(span('nb2f-io nb2f-out', `out: ${info.outputs.join(', ')}`));
    }
    for (const p of info.problems) {
      node.appendChild(span(`nb2f-badge-problem nb2f-${p.level}`, `${p.level}: ${p.message}`));
    }
    const edit = document.createElement('button');
    edit.className = 'nb2f-edit-tags';
    edit.textContent = 'tags';
    edit.title = 'Edit the nb2flow tags of this cell';
    edit.onclick = (ev: MouseEvent) => {
      ev.stopPropagation();
      void editTags(this.watcher, this.cell);
    };
    node.appendChild(edit);
  }
}

function span(cls: string, text: string): HTMLSpanElement {
  const s = document.createElement('span');
  s.className = cls;
  s.textContent = text;
  s.title = text;
  return s;
}

// --------------------------------------------------------------------------- tag editor

interface ITagChoice {
  role: string;
  name: string;
  options: { [tag: string]: string };
  cache: boolean;
  after: string[];
  /** the variables the flow returns (`output:NAME` tags) */
  outputs: string[];
  rest: string[];
  /** a literal of the cell to make the flow parameter `name` (both set, else nothing) */
  param?: { literal: string; name: string };
}

/** A cell's tags read into the editor's fields (tags the grammar does not know are kept). */
function readTags(tags: string[], g: IGrammar): ITagChoice {
  const choice: ITagChoice = {
    role: '',
    name: '',
    options: {},
    cache: false,
    after: [],
    outputs: [],
    rest: []
  };
  const optionTags = new Map(g.options.map(o => [o.tag, o]));
  for (const raw of tags) {
    const [head, ...value] = raw.trim().split(':');
    const key = head.trim().toLowerCase().replace('retry_delay', 'retry-delay');
    const text = value.join(':').trim();
    if (g.roles.includes(key) && (key === g.named_role || !value.length) && !choice.role) {
      choice.role = key;
      if (key === g.named_role) {
        choice.name = text;
      }
    } else if (g.flags.includes(key) && !value.length) {
      choice.cache = true;
    } else if (optionTags.has(key) && value.length) {
      choice.options[key] = text;
    } else if (key === g.after && text) {
      choice.after.push(text);
    } else if (key === g.output && text && !choice.outputs.includes(text)) {
      choice.outputs.push(text);
    } else {
      choice.rest.push(raw);
    }
  }
  return choice;
}

function writeTags(c: ITagChoice, g: IGrammar): string[] {
  const tags: string[] = [];
  if (c.role) {
    tags.push(c.role === g.named_role && c.name ? `${c.role}:${c.name}` : c.role);
  }
  if (c.role === g.named_role || c.role === '') {
    if (c.cache) {
      tags.push('cache');
    }
    for (const o of g.options) {
      if (c.options[o.tag] !== undefined && c.options[o.tag] !== '') {
        tags.push(`${o.tag}:${c.options[o.tag]}`);
      }
    }
    for (const a of c.after) {
      tags.push(`${g.after}:${a}`);
    }
  }
  for (const o of c.outputs) {
    tags.push(`${g.output}:${o}`);
  }
  return [...tags, ...c.rest];
}

/** A valid task name from what was typed: only identifier characters, never a keyword. */
export function cleanName(text: string, g: IGrammar): string {
  let name = text.replace(/[^A-Za-z0-9_]/g, '').replace(/^[0-9]+/, '');
  if (g.keywords.includes(name)) {
    name = `${name}_`;
  }
  return new RegExp(g.name_pattern).test(name) ? name : '';
}

/** A valid option value from what was typed ('' = unset). */
export function cleanNumber(text: string, o: IOptionSpec): string {
  if (text.trim() === '') {
    return '';
  }
  let v = Number(text);
  if (!Number.isFinite(v)) {
    return '';
  }
  if (o.integer) {
    v = Math.round(v);
  }
  if (v < o.min || (o.exclusive_min && v <= o.min)) {
    return '';
  }
  return String(v);
}

/** The tag form: the task's settings on the left, its ordering and the flow outputs the cell
 * declares on the right, the parameter control below (compact: JupyterLab's dialogs are at
 * most 500 px tall, and this one fits without scrolling). */
class TagForm extends Widget {
  constructor(
    readonly choice: ITagChoice,
    readonly g: IGrammar,
    tasks: string[],
    literals: string[],
    /** the server's verdict on one more `output:NAME` tag: null, or the problem */
    checkOutput: (name: string) => Promise<string | null>
  ) {
    super();
    this.addClass('nb2f-tag-form');
    const part = (cls: string, parent: HTMLElement = this.node) => {
      const div = document.createElement('div');
      div.className = cls;
      parent.appendChild(div);
      return div;
    };
    const columns = part('nb2f-tag-columns');
    const left = part('nb2f-tag-column', columns);
    const right = part('nb2f-tag-column', columns);
    let into: HTMLElement = left;
    // a <label> row focuses its control when its text is clicked; a row holding several
    // buttons is a <div> (a label would press the first of them)
    const row = (label: string, control: HTMLElement, tag: 'label' | 'div' = 'label') => {
      const l = document.createElement(tag);
      l.className = 'nb2f-tag-row';
      l.appendChild(span('nb2f-tag-label', label));
      l.appendChild(control);
      into.appendChild(l);
      return control;
    };
    const role = document.createElement('select');
    role.name = 'role';
    for (const [value, text] of [['', '(untagged)'], ...g.roles.map(r => [r, r])]) {
      role.appendChild(new Option(text, value, false, value === choice.role));
    }
    row('role', role);
    const name = document.createElement('input');
    name.name = 'task-name';
    name.placeholder = 'task name (optional)';
    name.value = choice.name;
    name.oninput = () => {
      const clean = cleanName(name.value, g);
      if (clean !== name.value) {
        name.value = clean;
      }
    };
    row('task name', name);
    const numbers: { [tag: string]: HTMLInputElement } = {};
    for (const o of g.options) {
      const input = document.createElement('input');
      input.type = 'number';
      input.name = o.tag;
      input.min = String(o.exclusive_min ? (o.integer ? o.min + 1 : o.min) : o.min);
      input.step = o.integer ? '1' : 'any';
      input.value = choice.options[o.tag] ?? '';
      input.onchange = () => (input.value = cleanNumber(input.value, o));
      numbers[o.tag] = input;
      row(o.label, input);
    }
    const cache = document.createElement('input');
    cache.type = 'checkbox';
    cache.name = 'cache';
    cache.checked = choice.cache;
    row('cache', cache);
    into = right;
    const after = document.createElement('select');
    after.name = 'after';
    after.multiple = true;
    after.size = 3;
    for (const t of tasks) {
      after.appendChild(new Option(t, t, false, choice.after.includes(t)));
    }
    row('after', after);
    // the variables the flow returns: each added only once the server's grammar took it
    const outputs = [...choice.outputs];
    const box = document.createElement('div');
    box.className = 'nb2f-tag-outputs';
    const chips = part('nb2f-output-list', box);
    const adding = part('nb2f-output-adding', box);
    const entry = document.createElement('input');
    entry.name = 'output-name';
    entry.placeholder = 'variable name';
    entry.setAttribute('aria-label', 'flow output to add');
    const add = document.createElement('button');
    add.type = 'button';
    add.name = 'output-add';
    add.className = 'jp-mod-styled nb2f-output-add';
    add.textContent = 'add';
    adding.append(entry, add);
    const problem = part('nb2f-tag-error', box);
    problem.setAttribute('role', 'alert');
    const show = () => {
      chips.replaceChildren();
      for (const name of outputs) {
        const chip = span('nb2f-output-chip', name);
        chip.dataset.name = name;
        const remove = document.createElement('button');
        remove.type = 'button';
        remove.className = 'nb2f-output-remove';
        remove.textContent = '\u00d7';
        remove.title = `the flow no longer returns ${name}`;
        remove.setAttribute('aria-label', `remove output ${name}`);
        remove.onclick = () => {
          outputs.splice(outputs.indexOf(name), 1);
          show();
        };
        chip.appendChild(remove);
        chips.appendChild(chip);
      }
      if (!outputs.length) {
        chips.appendChild(span('nb2f-output-none', 'none'));
      }
    };
    show();
    const addOutput = async () => {
      const name = entry.value.trim();
      if (!name) {
        return;
      }
      if (!outputs.includes(name)) {
        add.disabled = true;
        const refused = await checkOutput(name);
        add.disabled = false;
        problem.textContent = refused ?? '';
        if (refused) {
          return;
        }
        outputs.push(name);
        show();
      }
      entry.value = '';
      entry.focus();
    };
    add.onclick = () => void addOutput();
    // Enter in the name adds it (the dialog would take it as Apply: its own handler listens
    // on the dialog, capturing, so this one listens on the document, before it)
    this.onKey = (event: KeyboardEvent) => {
      if (event.key === 'Enter' && event.target === entry) {
        event.preventDefault();
        event.stopPropagation();
        void addOutput();
      }
    };
    document.addEventListener('keydown', this.onKey, true);
    row('flow outputs', box, 'div');
    const sync = () => {
      const task = role.value === g.named_role || role.value === '';
      name.disabled = role.value !== g.named_role;
      for (const input of [...Object.values(numbers), cache, after]) {
        (input as HTMLInputElement).disabled = !task;
      }
    };
    role.onchange = sync;
    sync();
    // a literal of the cell (picked from the cell's own, or typed) becomes a flow parameter
    const heading = part('nb2f-tag-heading');
    heading.textContent = 'make a literal of this cell a parameter';
    into = part('nb2f-tag-columns');
    const literal = document.createElement('input');
    literal.name = 'param-literal';
    literal.placeholder = literals.length ? 'pick or type a literal' : 'no literal in this cell';
    const list = document.createElement('datalist');
    list.id = `nb2f-literals-${++TagForm.count}`;
    for (const text of literals) {
      list.appendChild(new Option(text.length > 80 ? `${text.slice(0, 77)}...` : text, text));
    }
    literal.setAttribute('list', list.id);
    this.node.appendChild(list);
    row('literal', literal);
    const param = document.createElement('input');
    param.name = 'param-name';
    param.placeholder = 'parameter name';
    param.oninput = () => {
      const clean = cleanName(param.value, g);
      if (clean !== param.value) {
        param.value = clean;
      }
    };
    row('parameter', param);
    this.read = () => ({
      role: role.value,
      name: cleanName(name.value, g),
      options: Object.fromEntries(
        g.options.map(o => [o.tag, cleanNumber(numbers[o.tag].value, o)])
      ),
      cache: cache.checked,
      after: [...after.selectedOptions].map(o => o.value),
      outputs: [...outputs],
      rest: choice.rest,
      param:
        literal.value.trim() && cleanName(param.value, g)
          ? { literal: literal.value.trim(), name: cleanName(param.value, g) }
          : undefined
    });
  }

  getValue(): ITagChoice {
    return this.read();
  }

  dispose(): void {
    document.removeEventListener('keydown', this.onKey, true);
    super.dispose();
  }

  private read: () => ITagChoice;
  private onKey: (event: KeyboardEvent) => void;
  private static count = 0;
}

async function editTags(watcher: Watcher, cell: Cell): Promise<void> {
  const g = await grammar();
  let literals: string[] = [];
  try {
    literals = (
      await api<{ literals: string[] }>('literals', {
        path: watcher.path,
        source: cell.model.sharedModel.getSource()
      })
    ).literals;
  } catch (err) {
    console.warn('nb2flow: could not list the literals of the cell', err);
  }
  const tags = (cell.model.getMetadata('tags') as string[] | undefined) ?? [];
  const choice = readTags(tags, g);
  const own = watcher.analysis?.summary.cells[watcher.panel.content.widgets.indexOf(cell)]?.task;
  const tasks = (watcher.analysis?.summary.tasks ?? []).map(t => t.name).filter(t => t !== own);
  for (const a of choice.after) {
    if (!tasks.includes(a)) {
      tasks.push(a);
    }
  }
  const number = watcher.panel.content.widgets.indexOf(cell) + 1;
  const checkOutput = async (name: string): Promise<string | null> => {
    try {
      await api('tags', {
        path: watcher.path,
        notebook: notebookJSON(watcher.panel),
        cell: number,
        add: [`${g.output}:${name}`]
      });
      return null;
    } catch (err) {
      return (err as Error).message;
    }
  };
  const result = await showDialog({
    title: 'nb2flow tags',
    body: new TagForm(choice, g, tasks, cell.model.type === 'code' ? literals : [], checkOutput),
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Apply' })]
  });
  if (!result.button.accept || !result.value) {
    return;
  }
  const next = writeTags(result.value, g);
  if (next.join('\n') !== tags.join('\n')) {
    if (next.length) {
      cell.model.setMetadata('tags', next);
    } else {
      cell.model.deleteMetadata('tags');
    }
  }
  if (result.value.param) {
    await makeParameter(watcher, cell, result.value.param.literal, result.value.param.name);
  }
  watcher.schedule();
}

interface IEditedCell {
  index: number | null;
  at: number;
  cell_type: string;
  source: string;
  tags: string[];
}

/** Make `literal` of `cell` the flow parameter `name`: the server edits the notebook as it
 * is now (`nb2flow.notebook.edit.edit_cells`, as `nb2flow tag --param`), the model takes the
 * changed cells one by one, so each cell's undo and the notebook's save work as usual. A
 * refusal is one line naming the cell, shown in a dialog. */
async function makeParameter(
  watcher: Watcher,
  cell: Cell,
  literal: string,
  name: string
): Promise<void> {
  const panel = watcher.panel;
  const model = panel.content.model!;
  const notebook = notebookJSON(panel);
  let answer: { cells: IEditedCell[]; changes: string[] };
  try {
    answer = await api('parameter', {
      path: watcher.path,
      notebook,
      cell: panel.content.widgets.indexOf(cell) + 1,
      literal,
      name
    });
  } catch (err) {
    await showErrorMessage('nb2flow: no parameter made', (err as Error).message);
    return;
  }
  // the notebook changed while the server worked: apply nothing rather than lose an edit
  const changed = answer.cells.some(
    c =>
      c.index !== null &&
      (c.index >= model.cells.length ||
        model.cells.get(c.index).sharedModel.getSource() !== cellSource(notebook.cells[c.index]))
  );
  if (changed || model.cells.length !== notebook.cells.length) {
    await showErrorMessage('nb2flow: no parameter made', 'the notebook changed meanwhile: try again');
    return;
  }
  const cells = answer.cells.map(c => ({ c, model: c.index === null ? null : model.cells.get(c.index) }));
  for (const { c, model: m } of cells) {
    if (m) {
      if (m.sharedModel.getSource() !== c.source) {
        m.sharedModel.setSource(c.source);
      }
      const tags = (m.getMetadata('tags') as string[] | undefined) ?? [];
      if (tags.join('\n') !== c.tags.join('\n')) {
        m.setMetadata('tags', c.tags);
      }
    }
  }
  for (const { c } of cells.filter(x => x.c.index === null).sort((a, b) => a.c.at - b.c.at)) {
    model.sharedModel.insertCell(c.at, {
      cell_type: c.cell_type as 'code',
      source: c.source,
      metadata: c.tags.length ? { tags: c.tags } : {}
    });
  }
  Notification.success(`nb2flow: ${answer.changes.join('; ')}`, { autoClose: 8000 });
}

function cellSource(cell: any): string {
  return Array.isArray(cell.source) ? cell.source.join('') : cell.source ?? '';
}

// --------------------------------------------------------------------------- run, convert

async function pushSnapshot(panel: NotebookPanel, cell: Cell): Promise<void> {
  try {
    await api('snapshot', {
      path: panel.context.path,
      cell: cell.model.id,
      notebook: notebookJSON(panel)
    });
  } catch (err) {
    console.warn('nb2flow: could not hand the notebook to the kernel', err);
  }
}

/** Runs `%nb2flow run` in the notebook's kernel, in the notebook's last such cell (or a
 * new one at the end), so the live panel appears in the notebook. */
async function runAsFlow(panel: NotebookPanel): Promise<void> {
  const notebook = panel.content;
  const model = notebook.model!;
  let index = -1;
  notebook.widgets.forEach((w, i) => {
    if (w.model.type === 'code' && /^[ \t]*%nb2flow[ \t]+run\b/m.test(w.model.sharedModel.getSource())) {
      index = i;
    }
  });
  if (index < 0) {
    model.sharedModel.insertCell(model.cells.length, { cell_type: 'code', source: RUN_SOURCE });
    index = model.cells.length - 1;
  }
  const cell = notebook.widgets[index] as CodeCell;
  notebook.activeCellIndex = index;
  await notebook.scrollToCell(cell);
  await panel.sessionContext.ready;
  await pushSnapshot(panel, cell);
  await CodeCell.execute(cell, panel.sessionContext);
}

async function convert(panel: NotebookPanel): Promise<void> {
  try {
    const r = await api<{ written: string; tasks: number; warnings: string[] }>('convert', {
      path: panel.context.path,
      notebook: notebookJSON(panel)
    });
    const warn = r.warnings.length ? `, ${r.warnings.length} warnings` : '';
    Notification.success(`nb2flow: wrote ${r.written} (${r.tasks} tasks${warn})`, {
      autoClose: 8000
    });
  } catch (err) {
    Notification.error(`nb2flow: ${err}`, { autoClose: false });
  }
}

// --------------------------------------------------------------------------- the plan panel

class PlanPanel extends Widget {
  constructor(readonly tracker: INotebookTracker) {
    super();
    this.id = 'nb2flow-plan';
    this.title.label = 'Flow plan';
    this.title.caption = 'nb2flow: the task graph of the current notebook';
    this.title.closable = true;
    this.addClass('nb2f-plan-panel');
  }

  update_(watcher: Watcher | null): void {
    this.watcher = watcher;
    const node = this.node;
    node.textContent = '';
    const summary = watcher?.analysis?.summary;
    if (!watcher || !summary) {
      node.appendChild(span('nb2f-plan-empty', 'Open a notebook to see its flow plan.'));
      return;
    }
    const head = document.createElement('div');
    head.className = 'nb2f-plan-head';
    const problems =
      summary.problems.length + summary.cells.reduce((n, c) => n + c.problems.length, 0);
    head.textContent = `flow ${summary.flow}: ${summary.tasks.length} tasks, ${problems} problems`;
    node.appendChild(head);
    const graph = document.createElement('div');
    graph.className = 'nb2f-plan-graph';
    graph.innerHTML = watcher.analysis!.svg; // made by the server from escaped names
    node.appendChild(graph);
    graph.querySelectorAll<SVGGElement>('g.nb2f-node').forEach(g => {
      g.style.cursor = 'pointer';
      g.addEventListener('click', () => this.select(g.dataset.task ?? ''));
    });
    const list = document.createElement('ul');
    list.className = 'nb2f-plan-tasks';
    for (const t of summary.tasks) {
      const li = document.createElement('li');
      li.textContent = `${t.name}: cells ${t.cells.join(', ')}`;
      li.onclick = () => this.select(t.name);
      list.appendChild(li);
    }
    node.appendChild(list);
  }

  /** Select the cells of task `name` in its notebook. */
  select(name: string): void {
    const w = this.watcher;
    const task = w?.analysis?.summary.tasks.find(t => t.name === name);
    if (!w || !task || !task.cells.length) {
      return;
    }
    const nb: Notebook = w.panel.content;
    nb.deselectAll();
    const indices = task.cells.map(c => c - 1).filter(i => i >= 0 && i < nb.widgets.length);
    nb.activeCellIndex = indices[0];
    for (const i of indices) {
      nb.select(nb.widgets[i]);
    }
    void nb.scrollToCell(nb.widgets[indices[0]]);
    this.node.dataset.selected = name;
  }

  private watcher: Watcher | null = null;
}

// --------------------------------------------------------------------------- the plugin

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'nb2flow: per-cell task badges, tag controls, Run as flow, the flow plan',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette, ILabShell],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null
  ) => {
    const plan = new PlanPanel(tracker);
    const refreshPlan = () => {
      const current = tracker.currentWidget;
      plan.update_(current ? watchers.get(current) ?? null : null);
    };
    const onUpdate = (w: Watcher) => {
      if (w.panel === tracker.currentWidget) {
        refreshPlan();
      }
    };
    tracker.widgetAdded.connect((_, panel) => {
      watchers.set(panel, new Watcher(panel, onUpdate));
      const button = new ToolbarButton({
        className: 'nb2f-run-button',
        label: 'Run as flow',
        tooltip: 'nb2flow: run this notebook as a flow in its kernel (%nb2flow run)',
        onClick: () => void runAsFlow(panel)
      });
      panel.toolbar.insertItem(10, 'nb2flow-run', button);
    });
    tracker.currentChanged.connect(refreshPlan);

    const current = () => tracker.currentWidget;
    const enabled = () => current() !== null;
    app.commands.addCommand(CommandIDs.run, {
      label: 'Run as flow',
      caption: 'Run this notebook as a flow in its kernel (%nb2flow run), with the live panel',
      isEnabled: enabled,
      execute: () => {
        const panel = current();
        return panel ? runAsFlow(panel) : undefined;
      }
    });
    app.commands.addCommand(CommandIDs.convert, {
      label: 'Convert to script',
      caption: 'Write converted_scripts/<name>.py beside the notebook (nb2flow convert)',
      isEnabled: enabled,
      execute: () => {
        const panel = current();
        return panel ? convert(panel) : undefined;
      }
    });
    app.commands.addCommand(CommandIDs.plan, {
      label: 'Show flow plan',
      caption: 'The task graph of this notebook; click a task to select its cells',
      execute: () => {
        if (!plan.isAttached) {
          app.shell.add(plan, 'right', { rank: 700 });
        }
        refreshPlan();
        app.shell.activateById(plan.id);
      }
    });
    app.commands.addCommand(CommandIDs.tags, {
      label: 'nb2flow tags',
      caption: 'Edit the nb2flow tags of this cell (task, parameters, setup, skip, options)',
      isEnabled: () => !!current()?.content.activeCell,
      execute: () => {
        const panel = current();
        const cell = panel?.content.activeCell;
        const watcher = panel ? watchers.get(panel) : undefined;
        return cell && watcher ? editTags(watcher, cell) : undefined;
      }
    });
    if (palette) {
      for (const command of [CommandIDs.run, CommandIDs.convert, CommandIDs.plan, CommandIDs.tags]) {
        palette.addItem({ command, category: 'nb2flow' });
      }
    }

    // a %nb2flow cell starting: hand the server the notebook as it is now, unsaved edits
    // included; the kernel's magic takes it from there
    NotebookActions.executionScheduled.connect((_, { notebook, cell }) => {
      if (cell.model.type !== 'code' || !NB2FLOW_LINE.test(cell.model.sharedModel.getSource())) {
        return;
      }
      const panel = tracker.find(p => p.content === notebook);
      if (panel) {
        void pushSnapshot(panel, cell);
      }
    });

    // for tests and the benchmark: the watchers of the open notebooks
    (window as any).nb2flow = { watchers, refreshPlan };
  }
};

export default plugin;
