//! The sound card, through cpal.
//!
//! cpal's callback only copies samples into a lock-free ring buffer (rtrb);
//! when the buffer is full the rest of the callback's samples are dropped and
//! counted as an overrun, so the callback never waits. [`Capture::read`]
//! drains the buffer and mixes it down. When the device reports an error or
//! falls silent (no callbacks at all), the stream is dropped and reopened
//! every second until it works again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};
use earmark_engine::decode::downmix;

use crate::Error;
use crate::source::{Delivery, Source};

/// Seconds of audio the ring buffer holds.
const BUFFER_S: usize = 4;
/// A device that delivers nothing for this long is lost.
const STALL: Duration = Duration::from_secs(3);
/// Time between attempts to reopen a lost device.
const RETRY: Duration = Duration::from_secs(1);
/// Sleep while the buffer is empty.
const POLL: Duration = Duration::from_millis(20);

/// An input device as `earmark devices` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// cpal's id, which `--device` accepts (`alsa:default`).
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Default input format, e.g. "F32, 48000 Hz, 2 channels".
    pub format: String,
    /// True for the host's default input.
    pub default: bool,
}

/// Input devices of the default host.
///
/// # Errors
/// When the audio host cannot be asked.
pub fn devices() -> Result<Vec<DeviceInfo>, Error> {
    let host = cpal::default_host();
    let default = host
        .default_input_device()
        .and_then(|d| d.id().ok())
        .map(|id| id.to_string());
    let devices = host
        .input_devices()
        .map_err(|e| Error::Device(e.to_string()))?;
    Ok(devices
        .map(|d| {
            let id = d.id().map_or_else(|_| "?".into(), |id| id.to_string());
            DeviceInfo {
                name: d
                    .description()
                    .map_or_else(|_| id.clone(), |x| x.name().to_owned()),
                format: d.default_input_config().map_or_else(
                    |e| format!("unusable: {e}"),
                    |c| {
                        format!(
                            "{:?}, {} Hz, {} channels",
                            c.sample_format(),
                            c.sample_rate(),
                            c.channels()
                        )
                    },
                ),
                default: default.as_deref() == Some(id.as_str()),
                id,
            }
        })
        .collect())
}

/// What the callbacks share with the reader.
#[derive(Debug, Default)]
struct Shared {
    overruns: AtomicU64,
    failure: Mutex<Option<String>>,
}

/// An open stream.
struct Open {
    /// Kept alive: dropping it stops the capture.
    _stream: cpal::Stream,
    consumer: rtrb::Consumer<f32>,
    channels: usize,
    rate_hz: u32,
    name: String,
    last_audio: Instant,
}

/// The sound card as a [`Source`].
pub struct Capture {
    /// `--device`: a cpal id or part of a device name; `None` for the default.
    wanted: Option<String>,
    open: Option<Open>,
    shared: Arc<Shared>,
    rate_hz: u32,
    name: String,
    next_try: Instant,
    interleaved: Vec<f32>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("device", &self.name)
            .field("rate_hz", &self.rate_hz)
            .field("open", &self.open.is_some())
            .finish()
    }
}

impl Capture {
    /// Opens the default input, or the one whose id or name contains
    /// `device`, and starts capturing.
    ///
    /// # Errors
    /// When no such device exists or it cannot be opened.
    pub fn open(device: Option<&str>) -> Result<Self, Error> {
        let shared = Arc::new(Shared::default());
        let open = open_stream(device, &shared)?;
        Ok(Self {
            wanted: device.map(str::to_owned),
            rate_hz: open.rate_hz,
            name: open.name.clone(),
            open: Some(open),
            shared,
            next_try: Instant::now(),
            interleaved: Vec::new(),
        })
    }

    fn lose(&mut self, reason: String) -> Delivery {
        // Dropping a stream joins its capture thread, which may be stuck in
        // the audio host that just went away: let it go on its own thread.
        if let Some(open) = self.open.take() {
            std::thread::spawn(move || drop(open));
        }
        self.next_try = Instant::now() + RETRY;
        Delivery::Lost(reason)
    }
}

impl Source for Capture {
    fn describe(&self) -> String {
        format!("sound card {}", self.name)
    }

    fn rate_hz(&self) -> u32 {
        self.rate_hz
    }

    fn live(&self) -> bool {
        true
    }

    fn overruns(&self) -> u64 {
        self.shared.overruns.load(Ordering::Relaxed)
    }

    fn read(&mut self, mono: &mut Vec<f32>) -> Result<Delivery, Error> {
        let Some(open) = self.open.as_mut() else {
            if Instant::now() < self.next_try {
                std::thread::sleep(POLL);
                return Ok(Delivery::Idle);
            }
            self.next_try = Instant::now() + RETRY;
            return Ok(match open_stream(self.wanted.as_deref(), &self.shared) {
                Ok(open) => {
                    self.rate_hz = open.rate_hz;
                    self.name = open.name.clone();
                    self.open = Some(open);
                    Delivery::Back
                }
                Err(_) => Delivery::Idle,
            });
        };
        let failure = self.shared.failure.lock().ok().and_then(|mut f| f.take());
        if let Some(reason) = failure {
            return Ok(self.lose(reason));
        }
        let available = open.consumer.slots();
        let take = available - available % open.channels;
        if take == 0 {
            if open.last_audio.elapsed() > STALL {
                return Ok(self.lose(format!("no audio for {} s", STALL.as_secs())));
            }
            std::thread::sleep(POLL);
            return Ok(Delivery::Idle);
        }
        let Ok(chunk) = open.consumer.read_chunk(take) else {
            return Ok(Delivery::Idle);
        };
        let (a, b) = chunk.as_slices();
        self.interleaved.clear();
        self.interleaved.extend_from_slice(a);
        self.interleaved.extend_from_slice(b);
        chunk.commit_all();
        open.last_audio = Instant::now();
        downmix(&self.interleaved, open.channels, mono);
        Ok(Delivery::Audio)
    }
}

fn find_device(host: &cpal::Host, wanted: Option<&str>) -> Result<cpal::Device, Error> {
    let Some(wanted) = wanted else {
        return host
            .default_input_device()
            .ok_or_else(|| Error::Device("there is no default input device".into()));
    };
    let devices = host
        .input_devices()
        .map_err(|e| Error::Device(e.to_string()))?;
    devices
        .into_iter()
        .find(|d| {
            let id = d.id().map(|id| id.to_string()).unwrap_or_default();
            let name = d
                .description()
                .map(|x| x.name().to_owned())
                .unwrap_or_default();
            id == wanted || id.contains(wanted) || name.contains(wanted)
        })
        .ok_or_else(|| {
            Error::Device(format!(
                "no input device matches {wanted:?} (see `earmark devices`)"
            ))
        })
}

fn open_stream(wanted: Option<&str>, shared: &Arc<Shared>) -> Result<Open, Error> {
    let host = cpal::default_host();
    let device = find_device(&host, wanted)?;
    let name = device.id().map_or_else(
        |_| wanted.unwrap_or("default").to_owned(),
        |id| id.to_string(),
    );
    let device_error = |e: cpal::Error| Error::Device(format!("{name}: {e}"));
    let config = device.default_input_config().map_err(device_error)?;
    let channels = usize::from(config.channels()).max(1);
    let rate_hz = config.sample_rate();
    let (producer, consumer) = rtrb::RingBuffer::new(rate_hz as usize * channels * BUFFER_S);
    // Periods of half a second rather than the host's default few ms: the
    // monitor has no use for low latency, and with ALSA's PulseAudio plugin
    // the short periods kept the capture thread at 5-10% of a core.
    let mut stream_config = config.config();
    if let cpal::SupportedBufferSize::Range { min, max } = *config.buffer_size() {
        stream_config.buffer_size = cpal::BufferSize::Fixed((rate_hz / 2).clamp(min, max));
    }
    let stream = match config.sample_format() {
        SampleFormat::F32 => build::<f32>(&device, stream_config, producer, shared),
        SampleFormat::I16 => build::<i16>(&device, stream_config, producer, shared),
        SampleFormat::I32 => build::<i32>(&device, stream_config, producer, shared),
        SampleFormat::U16 => build::<u16>(&device, stream_config, producer, shared),
        SampleFormat::U8 => build::<u8>(&device, stream_config, producer, shared),
        other => {
            return Err(Error::Device(format!(
                "{name}: sample format {other:?} is not supported"
            )));
        }
    }
    .map_err(device_error)?;
    stream.play().map_err(device_error)?;
    Ok(Open {
        _stream: stream,
        consumer,
        channels,
        rate_hz,
        name,
        last_audio: Instant::now(),
    })
}

fn build<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    mut producer: rtrb::Producer<f32>,
    shared: &Arc<Shared>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels).max(1);
    let on_data = Arc::clone(shared);
    let on_error = Arc::clone(shared);
    device.build_input_stream(
        config,
        move |data: &[T], _: &cpal::InputCallbackInfo| {
            // Copy the whole frames that fit; never wait for the reader.
            let fit = data.len().min(producer.slots());
            let n = fit - fit % channels;
            if let Ok(chunk) = producer.write_chunk_uninit(n) {
                chunk.fill_from_iter(data.iter().map(|s| s.to_sample::<f32>()));
            }
            if n < data.len() {
                on_data.overruns.fetch_add(1, Ordering::Relaxed);
            }
        },
        move |e: cpal::Error| {
            // Rerouting and overruns keep the stream going.
            match e.kind() {
                cpal::ErrorKind::DeviceChanged => return,
                cpal::ErrorKind::Xrun => {
                    on_error.overruns.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                _ => {}
            }
            if let Ok(mut failure) = on_error.failure.lock() {
                *failure = Some(e.to_string());
            }
        },
        None,
    )
}
