# A tiny static HTTP/1.0 server (perl-base is in the base image, python is not): serves DIR on PORT.
use strict;
use IO::Socket::INET;
my ($port, $dir) = @ARGV;
my $server = IO::Socket::INET->new(LocalAddr => '0.0.0.0', LocalPort => $port, Listen => 10, ReuseAddr => 1) or die "bind $port: $!";
$| = 1;
print "serving $dir on port $port\n";
while (my $client = $server->accept) {
  my $request = <$client> // next;
  while (my $line = <$client>) { last if $line =~ /^\r?\n$/ }
  my ($path) = $request =~ m{^GET (/[^ ?]*)};
  $path = '/index.html' if !defined $path || $path eq '/';
  my $file = "$dir$path";
  if ($path !~ m{\.\.} && open(my $fh, '<', $file)) {
    local $/;
    my $body = <$fh>;
    print $client "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
  } else {
    print $client "HTTP/1.0 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n";
  }
  close $client;
}
