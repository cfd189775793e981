// Mentions as the server resolved them (docs/protocol.md, *Mentions*): a message carries
// the user ids it mentions and whether it mentions everyone, so the page never parses
// `@` itself to decide who was meant.

/** Whether `msg` mentions the reader (`me`: the reader's user id), by name or everyone. */
export function mentionsMe(msg, me) {
  if (msg.deleted || me == null || msg.user_id === me) return false;
  return Boolean(msg.mention_all) || (Array.isArray(msg.mentions) && msg.mentions.includes(me));
}

/**
 * Which @words of `msg` to mark as mentions: `@room`/`@here` when it mentions everyone,
 * and, when it names accounts, the other @words (their handles: the message carries ids,
 * not which word named whom). Null when it mentions nobody.
 */
export function mentionWords(msg) {
  const all = Boolean(msg.mention_all);
  const named = Array.isArray(msg.mentions) && msg.mentions.length > 0;
  if (msg.deleted || (!all && !named)) return null;
  return (word) => {
    const everyone = /^(room|here)$/i.test(word);
    return everyone ? all : named;
  };
}
