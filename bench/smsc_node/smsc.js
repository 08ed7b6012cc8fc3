#!/usr/bin/env node
// A bench SMSC on the npm `smpp` package: a peer that does not share our reading of SMPP.
//
//   node smsc.js [--port 0] [--system-id loyalty] [--password secret] [--receipt-delay-ms 100]
//
// It accepts one ESME bind (bind_transceiver; also bind_transmitter/receiver), answers every
// submit_sm at once with a message_id and, --receipt-delay-ms later, sends a delivery receipt
// (deliver_sm, esm_class 0x04, text "id:<message_id> sub:001 dlvrd:001 submit date:...
// done date:... stat:DELIVRD err:000 text:..."). Every PDU is its own socket write, with
// Nagle off: no batching of writes.
//
// Controlled over stdin/stdout, one JSON object a line. Events out:
//   {"event":"listening","port":N}   {"event":"bound","system_id":..,"command":..}
//   {"event":"unbound"}   {"event":"measuring"}   {"event":"result",...}   {"event":"error",..}
// Commands in:
//   {"cmd":"members","numbers":["139...",...],"texts":["JF","DJ?",...]}  the load's members
//       (in the order they are first used) and texts: member k's n-th MO is
//       texts[(n + k) % texts.length], counted across runs, so one number never sends the
//       same text twice within texts.length of its own messages.
//   {"cmd":"run","mode":"closed"|"open","in_flight":50,"rate":1000,"window":50,
//    "warmup_s":2,"duration_s":10,"drain_s":2,"timeout_s":10}
//       closed: keep in_flight MO outstanding (a new one as soon as a reply MT completes);
//       open: offer `rate` MO/s whatever the replies. The SMSC keeps at most `window`
//       deliver_sm (MO and receipts) unacknowledged towards the ESME; the rest queue here,
//       and an MO's clock starts when it is queued (no coordinated omission). Measured: MO
//       queued -> last part of the first reply MT to that number.
//   {"cmd":"quit"}
'use strict';

const smpp = require('smpp');
const readline = require('readline');

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const PORT = Number(option('--port', '0'));
const SYSTEM_ID = option('--system-id', 'loyalty');
const PASSWORD = option('--password', 'secret');
const RECEIPT_DELAY_MS = Number(option('--receipt-delay-ms', '100'));
const SHORT_CODE = option('--short-code', '10086');
const ESME_RBINDFAIL = 0x0d;

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function nowMs() {
  return Number(process.hrtime.bigint()) / 1e6;
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  const rank = (sorted.length - 1) * p / 100;
  const lo = Math.floor(rank), hi = Math.ceil(rank);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

function stamp(d) {
  const p = (n) => String(n).padStart(2, '0');
  return p(d.getUTCFullYear() % 100) + p(d.getUTCMonth() + 1) + p(d.getUTCDate()) +
    p(d.getUTCHours()) + p(d.getUTCMinutes());
}

// --- state ---------------------------------------------------------------------------------

let session = null;           // the bound ESME session
let window = 10;              // deliver_sm unacknowledged at most
let outstanding = 0;          // deliver_sm sent, no resp yet
const deliverQueue = [];      // [fields, onResp]
let nextId = 0x100000;
let numbers = [];
let texts = ['JF'];
const sentCount = new Map();  // number -> MOs sent so far (all runs)
const memberIndex = new Map();
const pending = new Map();    // number -> {t, parts: Map(ref -> Set(seq))}
let free = [];                // members with nothing pending, FIFO
let run = null;               // the current run's counters
const totals = {submits: 0, receipts: 0, receiptErrors: 0, moErrors: 0, extraMt: 0};

function freshCounters() {
  return {done: 0, latencies: [], moErrors: 0, lost: 0, extraMt: 0, submits: 0,
          receipts: 0, offered: 0, skipped: 0, counting: false};
}

// --- sending deliver_sm within the window -------------------------------------------------

function deliver(fields, onResp) {
  deliverQueue.push([fields, onResp]);
  pump();
}

function pump() {
  while (session && outstanding < window && deliverQueue.length) {
    const [fields, onResp] = deliverQueue.shift();
    outstanding += 1;
    const ok = session.deliver_sm(fields, (pdu) => {
      outstanding -= 1;
      onResp(pdu.command_status);
      pump();
    });
    if (!ok) {
      outstanding -= 1;
      onResp(-1);
    }
  }
}

function encodeText(text) {
  // GSM default alphabet for plain ASCII letters and punctuation, else UCS-2 (as handsets do).
  if (/^[A-Za-z0-9 ?!.,]*$/.test(text)) {
    return {data_coding: 0, short_message: Buffer.from(text, 'ascii')};
  }
  const le = Buffer.from(text, 'utf16le');
  return {data_coding: 8, short_message: Buffer.from(le).swap16()};
}

function sendMo(number) {
  const k = memberIndex.get(number) || 0;
  const n = sentCount.get(number) || 0;
  sentCount.set(number, n + 1);
  const text = texts[(n + k) % texts.length];
  const entry = {t: nowMs(), parts: new Map(), counted: !!(run && run.counting)};
  pending.set(number, entry);
  if (run) run.offered += 1;
  deliver(Object.assign({source_addr: number, source_addr_ton: 1, source_addr_npi: 1,
                         destination_addr: SHORT_CODE, esm_class: 0},
                        encodeText(text)), (status) => {
    if (status !== 0) {
      totals.moErrors += 1;
      if (run) run.moErrors += 1;
      if (pending.get(number) === entry) {
        pending.delete(number);
        release(number);
      }
    }
  });
}

function release(number) {
  free.push(number);
  if (run && run.mode === 'closed' && run.loop) next();
}

function next() {
  if (!free.length) return false;
  sendMo(free.shift());
  return true;
}

// --- receiving submit_sm ------------------------------------------------------------------

function concatOf(pdu) {
  // [ref, total, seq] from a concatenation UDH (8- or 16-bit reference) or the SAR TLVs.
  const sm = pdu.short_message;
  if (sm && Array.isArray(sm.udh)) {
    for (const ie of sm.udh) {
      if (ie[0] === 0x00 && ie[1] === 3) return [ie[2], ie[3], ie[4]];
      if (ie[0] === 0x08 && ie[1] === 4) return [ie[2] * 256 + ie[3], ie[4], ie[5]];
    }
  }
  if (pdu.sar_total_segments) {
    return [pdu.sar_msg_ref_num || 0, pdu.sar_total_segments, pdu.sar_segment_seqnum || 1];
  }
  return null;
}

function onSubmit(pdu) {
  const messageId = (nextId++).toString(16);
  session.send(pdu.response({message_id: messageId}));
  totals.submits += 1;
  if (run) run.submits += 1;
  const number = pdu.destination_addr;
  const entry = pending.get(number);
  const concat = concatOf(pdu);
  let complete = true;
  if (entry && concat && concat[1] > 1) {
    const [ref, total, seq] = concat;
    const got = entry.parts.get(ref) || new Set();
    got.add(seq);
    entry.parts.set(ref, got);
    complete = got.size >= total;
  }
  if (!entry) {
    totals.extraMt += 1;
    if (run) run.extraMt += 1;
  } else if (complete) {
    pending.delete(number);
    if (run && run.counting) run.done += 1;  // throughput: replies inside the window
    if (run && entry.counted) run.latencies.push(nowMs() - entry.t);  // MOs sent inside it
    release(number);
  }
  if (pdu.registered_delivery & 0x03) {
    setTimeout(() => sendReceipt(pdu, messageId), RECEIPT_DELAY_MS);
  }
}

function sendReceipt(pdu, messageId) {
  const when = stamp(new Date());
  const text = `id:${messageId} sub:001 dlvrd:001 submit date:${when} done date:${when} ` +
    'stat:DELIVRD err:000 text:';
  deliver({source_addr: pdu.destination_addr, source_addr_ton: pdu.dest_addr_ton,
           source_addr_npi: pdu.dest_addr_npi, destination_addr: pdu.source_addr,
           esm_class: 0x04, data_coding: 0, short_message: Buffer.from(text, 'ascii')},
          (status) => {
            totals.receipts += 1;
            if (run) run.receipts += 1;
            if (status !== 0) totals.receiptErrors += 1;
          });
}

// --- the server ---------------------------------------------------------------------------

const server = smpp.createServer((s) => {
  s.socket.setNoDelay(true);
  const bind = (pdu) => {
    if (pdu.system_id !== SYSTEM_ID || pdu.password !== PASSWORD) {
      s.send(pdu.response({command_status: ESME_RBINDFAIL}));
      s.close();
      return;
    }
    s.send(pdu.response({system_id: 'nodesmsc'}));
    session = s;
    outstanding = 0;
    emit({event: 'bound', system_id: pdu.system_id, command: pdu.command});
    pump();
  };
  s.on('bind_transceiver', bind);
  s.on('bind_transmitter', bind);
  s.on('bind_receiver', bind);
  s.on('submit_sm', (pdu) => { if (s === session) onSubmit(pdu); });
  s.on('enquire_link', (pdu) => s.send(pdu.response()));
  s.on('unbind', (pdu) => { s.send(pdu.response()); s.close(); });
  s.on('error', () => {});
  s.on('close', () => {
    if (s === session) {
      session = null;
      outstanding = 0;
      // What was in flight on that link is lost: its members are free again.
      for (const number of pending.keys()) free.push(number);
      pending.clear();
      deliverQueue.length = 0;
      emit({event: 'unbound'});
    }
  });
});

server.listen(PORT, '127.0.0.1', () => emit({event: 'listening', port: server.address().port}));

// --- runs ---------------------------------------------------------------------------------

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function expire(timeoutMs) {
  const limit = nowMs() - timeoutMs;
  for (const [number, entry] of pending) {
    if (entry.t < limit) {
      pending.delete(number);
      if (run && entry.counted) run.lost += 1;
      release(number);
    }
  }
}

async function doRun(cmd) {
  if (!session) throw new Error('no ESME bound');
  window = cmd.window || window;
  const mode = cmd.mode || 'closed';
  const timeoutMs = 1000 * (cmd.timeout_s || 10);
  run = Object.assign(freshCounters(), {mode, loop: true});
  const reaper = setInterval(() => expire(timeoutMs), 250);
  let ticker = null;
  if (mode === 'closed') {
    const n = Math.min(cmd.in_flight || 50, free.length);
    for (let i = 0; i < n; i++) next();
  } else {
    const start = nowMs();
    const rate = cmd.rate || 1000;
    let sent = 0;
    ticker = setInterval(() => {
      const due = Math.floor((nowMs() - start) * rate / 1000) - sent;
      for (let i = 0; i < due; i++) {
        sent += 1;
        if (!next()) run.skipped += 1;
      }
    }, 1);
  }
  await sleep(1000 * (cmd.warmup_s || 0));
  const base = {offered: run.offered, skipped: run.skipped};
  run.counting = true;
  for (const entry of pending.values()) entry.counted = false;  // started in the warm-up
  emit({event: 'measuring'});
  const t0 = nowMs();
  const cpu0 = process.cpuUsage();
  await sleep(1000 * (cmd.duration_s || 10));
  const elapsed = (nowMs() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  run.counting = false;
  const counted = run;
  counted.loop = false;
  if (ticker) clearInterval(ticker);
  emit({event: 'measured'});
  // Let what is in flight finish, so the next run starts with every member free.
  const drainUntil = nowMs() + 1000 * (cmd.drain_s || 2);
  while (nowMs() < drainUntil && pending.size) await sleep(20);
  clearInterval(reaper);
  expire(0);
  run = null;
  const lat = counted.latencies.sort((a, b) => a - b);
  return {
    event: 'result', mode, window, in_flight: mode === 'closed' ? cmd.in_flight || 50 : null,
    rate_offered: mode === 'open' ? (counted.offered - base.offered) / elapsed : null,
    skipped: counted.skipped - base.skipped,
    elapsed_s: elapsed, round_trips: counted.done, per_s: counted.done / elapsed,
    p50_ms: percentile(lat, 50), p99_ms: percentile(lat, 99),
    max_ms: lat.length ? lat[lat.length - 1] : null,
    mo_errors: counted.moErrors, lost: counted.lost, extra_mt: counted.extraMt,
    submits: counted.submits, receipts: counted.receipts,
    smsc_cpu_s: (cpu.user + cpu.system) / 1e6,
  };
}

const rl = readline.createInterface({input: process.stdin});
let queue = Promise.resolve();
rl.on('line', (line) => {
  if (!line.trim()) return;
  queue = queue.then(async () => {
    const cmd = JSON.parse(line);
    if (cmd.cmd === 'members') {
      numbers = cmd.numbers;
      texts = cmd.texts && cmd.texts.length ? cmd.texts : texts;
      memberIndex.clear();
      numbers.forEach((n, i) => memberIndex.set(n, i));
      free = numbers.filter((n) => !pending.has(n));
      emit({event: 'members', count: numbers.length, texts: texts.length});
    } else if (cmd.cmd === 'run') {
      emit(await doRun(cmd));
    } else if (cmd.cmd === 'stats') {
      emit(Object.assign({event: 'stats', bound: !!session, pending: pending.size}, totals));
    } else if (cmd.cmd === 'quit') {
      emit(Object.assign({event: 'bye'}, totals));
      process.exit(0);
    }
  }).catch((e) => emit({event: 'error', message: String(e && e.message || e)}));
});
rl.on('close', () => process.exit(0));
