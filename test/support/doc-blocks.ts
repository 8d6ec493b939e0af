/**
 * Reading a Markdown page's code blocks for the tests that keep the docs true: the blocks with their
 * language and marks, the `sluice` command lines inside shell blocks (as argument vectors), and the
 * shape of an output line (its numbers, durations and ports left out), so that a sample output in the
 * docs can be compared with what the command prints today.
 */

/** A fenced code block: ```LANG MARKS. */
export interface DocBlock {
  /** `sh`, `ts`, `text`, ... */
  readonly language: string;
  /** The words after the language: `not-run`. */
  readonly marks: readonly string[];
  readonly code: string;
  /** 1-based line of the opening fence, for messages. */
  readonly line: number;
}

export function codeBlocks(markdown: string): DocBlock[] {
  const blocks: DocBlock[] = [];
  const lines = markdown.split("\n");
  for (let index = 0; index < lines.length; index++) {
    const open = /^```(\w+)((?: [\w-]+)*)\s*$/.exec(lines[index] as string);
    if (open === null) continue;
    const start = index;
    const body: string[] = [];
    for (index++; index < lines.length && lines[index] !== "```"; index++) body.push(lines[index] as string);
    blocks.push({
      language: open[1] as string,
      marks: (open[2] ?? "").trim().split(" ").filter(Boolean),
      code: body.join("\n"),
      line: start + 1,
    });
  }
  return blocks;
}

/**
 * The argument vectors of the `sluice` commands in a shell block: continuation lines joined, comments
 * and here-document bodies left out, pipelines and lists split, redirections dropped, quotes removed.
 * Enough shell for documentation, not a shell.
 */
export function sluiceCommands(script: string): string[][] {
  const commands: string[][] = [];
  const lines = script.replace(/\\\n\s*/g, " ").split("\n");
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index] as string;
    const heredoc = /<<-?\s*'?(\w+)'?/.exec(line);
    for (const command of splitCommands(words(line))) {
      if (command[0] === "sluice") commands.push(command.slice(1));
    }
    if (heredoc !== null) while (index + 1 < lines.length && lines[index + 1] !== heredoc[1]) index++;
  }
  return commands;
}

const OPERATORS = new Set(["|", "||", "&&", ";", "&"]);
const REDIRECTION = /^(\d?>>?|<<?-?|\d?>&\d|&>)/;

/** Words and operators of one line, quotes removed; a comment ends the line. */
function words(line: string): string[] {
  const out: string[] = [];
  let word = "";
  let quote: string | undefined;
  let started = false;
  const finish = () => {
    if (started) out.push(word);
    word = "";
    started = false;
  };
  for (let at = 0; at < line.length; at++) {
    const character = line[at] as string;
    if (quote !== undefined) {
      if (character === quote) quote = undefined;
      else word += character;
      continue;
    }
    if (character === "'" || character === '"') {
      quote = character;
      started = true;
    } else if (character === "#" && !started) {
      break;
    } else if (/\s/.test(character)) {
      finish();
    } else if ("|;&".includes(character)) {
      finish();
      const double = line[at + 1] === character && character !== ";";
      out.push(double ? character + character : character);
      if (double) at++;
    } else {
      word += character;
      started = true;
    }
  }
  finish();
  return out;
}

/** Splits words at operators and drops redirections with their targets. */
function splitCommands(tokens: readonly string[]): string[][] {
  const commands: string[][] = [[]];
  for (let index = 0; index < tokens.length; index++) {
    const token = tokens[index] as string;
    if (OPERATORS.has(token)) {
      commands.push([]);
      continue;
    }
    const redirection = REDIRECTION.exec(token);
    if (redirection !== null) {
      // `> file` takes the next word; `>file` and `2>&1` carry theirs.
      if (token === redirection[0] && !/&\d$/.test(token)) index++;
      continue;
    }
    (commands[commands.length - 1] as string[]).push(token);
  }
  return commands.filter((command) => command.length > 0);
}

/**
 * An output line as a pattern: what varies between runs (numbers, durations, a local port) is left
 * out, what sluice chose to say is kept.
 */
export function shapeOf(line: string): string {
  return line
    .trim()
    .replace(/127\.0\.0\.1:\d+/g, "127.0.0.1:PORT")
    .replace(/\d+(\.\d+)?/g, "#")
    .replace(/# (ms|s|min|h)\b( # (s|min)\b)?/g, "#T");
}
