// A tiny HTTP/1.0 server for machines in tests (perl-base is in minbase, python is not): run it as
// `perl server.pl <port> <name>`; it answers every request with "<name> <request path>".
export const PERL_HTTP_SERVER = `use IO::Socket::INET;
my ($port, $name) = @ARGV;
$| = 1;
my $server = IO::Socket::INET->new(LocalAddr => '0.0.0.0', LocalPort => $port, Listen => 5, ReuseAddr => 1) or die "bind $port: $!";
while (my $client = $server->accept) {
  my $request = <$client>;
  next unless defined $request;
  my ($path) = $request =~ m{^\\S+ (\\S+)};
  while (my $line = <$client>) { last if $line =~ /^\\r?\\n$/ }
  my $body = "$name $path\\n";
  print $client "HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: " . length($body) . "\\r\\n\\r\\n$body";
  close $client;
}
`;
