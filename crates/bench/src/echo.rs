//! The RPC ceilings: a tonic server that only echoes (E) or floods a stream
//! (S), in a process of its own like leadflow's.

use std::time::{Duration, Instant};

use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status};

use crate::stats::{Stats, closed_loop};

pub(crate) mod pb {
    #![allow(unreachable_pub, missing_debug_implementations, clippy::all, clippy::pedantic)]
    tonic::include_proto!("leadflow.bench.v1");
}

#[derive(Debug, Default)]
struct Echo;

type Flood = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::FloodResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::echo_service_server::EchoService for Echo {
    type FloodStream = Flood;

    async fn echo(&self, request: Request<pb::EchoRequest>) -> Result<Response<pb::EchoResponse>, Status> {
        Ok(Response::new(pb::EchoResponse {
            payload: request.into_inner().payload,
        }))
    }

    async fn flood(&self, request: Request<pb::FloodRequest>) -> Result<Response<Flood>, Status> {
        let r = request.into_inner();
        let payload = vec![7_u8; usize::try_from(r.size).unwrap_or(0)];
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            for _ in 0..r.messages {
                if tx
                    .send(Ok(pb::FloodResponse {
                        payload: payload.clone(),
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// `leadflow-bench echo-server`: serves until killed.
pub(crate) async fn serve(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(pb::echo_service_server::EchoServiceServer::new(Echo))
        .serve(listen)
        .await?;
    Ok(())
}

/// E: unary echo of `size` bytes.
pub(crate) async fn unary(
    channels: &[tonic::transport::Channel],
    size: usize,
    concurrency: usize,
    duration: Duration,
    server: u32,
) -> Stats {
    let clients: Vec<_> = channels
        .iter()
        .cloned()
        .map(pb::echo_service_client::EchoServiceClient::new)
        .collect();
    let payload = vec![1_u8; size];
    closed_loop(
        "E: tonic unary echo",
        concurrency,
        duration,
        Some(server),
        move |w, _| {
            let mut client = clients[w % clients.len()].clone();
            let payload = payload.clone();
            async move {
                client.echo(pb::EchoRequest { payload }).await?;
                Ok(1)
            }
        },
    )
    .await
}

/// Asks for `messages` of `size` bytes on one stream; how many arrived.
async fn flood(
    client: &mut pb::echo_service_client::EchoServiceClient<tonic::transport::Channel>,
    messages: i64,
    size: usize,
) -> anyhow::Result<u64> {
    let mut stream = client
        .flood(pb::FloodRequest {
            messages,
            size: i32::try_from(size).unwrap_or(0),
        })
        .await?
        .into_inner();
    let mut n = 0_u64;
    while let Some(m) = stream.next().await {
        m?;
        n += 1;
    }
    Ok(n)
}

/// S: messages a second one server stream delivers.
pub(crate) async fn stream(
    channel: &tonic::transport::Channel,
    size: usize,
    messages: i64,
    server: u32,
) -> anyhow::Result<Stats> {
    let mut client = pb::echo_service_client::EchoServiceClient::new(channel.clone());
    let cpu = crate::cpu::Meter::start(Some(server));
    let started = Instant::now();
    let n = flood(&mut client, messages, size).await?;
    let seconds = started.elapsed().as_secs_f64();
    let (client_cpu, server_cpu) = cpu.stop();
    #[allow(clippy::cast_precision_loss)]
    Ok(Stats {
        name: "S: tonic server stream".to_owned(),
        concurrency: 1,
        per_second: n as f64 / seconds,
        items: n,
        calls: 1,
        seconds,
        client_cpu,
        server_cpu,
        ..Stats::default()
    })
}

/// S in the fan-out's layout: `streams` server streams opened at once over
/// connections of 100 streams each, every stream sent `messages` messages
/// of `size` bytes; messages a second over all streams, from the first
/// open to the last message (as the backlog fan-out counts its deliveries).
pub(crate) async fn streams(
    address: &str,
    streams: usize,
    size: usize,
    messages: i64,
    server: u32,
) -> anyhow::Result<Stats> {
    let connections = streams.div_ceil(100);
    let channels = crate::server::connect(address, connections).await?;
    let cpu = crate::cpu::Meter::start(Some(server));
    let started = Instant::now();
    let mut readers = Vec::with_capacity(streams);
    for s in 0..streams {
        let mut client = pb::echo_service_client::EchoServiceClient::new(channels[s % connections].clone());
        readers.push(tokio::spawn(
            async move { flood(&mut client, messages, size).await },
        ));
    }
    let mut n = 0;
    for r in readers {
        n += r.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let (client_cpu, server_cpu) = cpu.stop();
    #[allow(clippy::cast_precision_loss)]
    Ok(Stats {
        name: format!("S: {streams} tonic server streams over {connections} connections, {size} B"),
        concurrency: streams,
        per_second: n as f64 / seconds,
        items: n,
        calls: streams as u64,
        seconds,
        client_cpu,
        server_cpu,
        ..Stats::default()
    })
}
