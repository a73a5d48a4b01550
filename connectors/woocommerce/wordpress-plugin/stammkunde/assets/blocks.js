/**
 * Stammkunde in the Cart and Checkout blocks: points for this cart, the member's codes
 * (apply) and affordable rewards (redeem and apply), below the coupon field (DiscountsMeta).
 * Plain JavaScript on WordPress' own globals: no build step, no framework of its own.
 *
 * License: GPL-2.0-or-later
 */
( function ( wp, wc, text ) {
	'use strict';
	if ( ! wp || ! wp.plugins || ! wp.element || ! wc || ! wc.blocksCheckout ) {
		return;
	}
	var el = wp.element.createElement;
	var useState = wp.element.useState;
	var useEffect = wp.element.useEffect;
	var checkout = wc.blocksCheckout;
	var Slot = checkout.ExperimentalDiscountsMeta || checkout.DiscountsMeta;
	var update = checkout.extensionCartUpdate;
	if ( ! Slot || ! update ) {
		return;
	}

	function fill( template, value ) {
		return template.replace( '%s', String( value ) );
	}

	function newKey() {
		if ( window.crypto && window.crypto.randomUUID ) {
			return window.crypto.randomUUID();
		}
		return 'xxxxxxxx-xxxx-4xxx-8xxx-xxxxxxxxxxxx'.replace( /x/g, function () {
			return ( Math.random() * 16 | 0 ).toString( 16 );
		} );
	}

	function Rewards( props ) {
		var data = ( props.extensions && props.extensions.stammkunde ) || {};
		var busy = useState( false );
		var error = useState( '' );
		// One idempotency key per reward and page view: a double click redeems once.
		var keys = useState( {} )[ 0 ];
		var polls = useState( 0 );

		useEffect( function () {
			if ( ! data.pending || polls[ 0 ] >= 10 ) {
				return undefined;
			}
			var timer = setTimeout( function () {
				polls[ 1 ]( polls[ 0 ] + 1 );
				update( { namespace: 'stammkunde', data: { action: 'check' } } ).catch( function ( e ) {
					error[ 1 ]( ( e && e.message ) || text.fallback );
				} );
			}, 3000 );
			return function () {
				clearTimeout( timer );
			};
		}, [ data.pending, polls[ 0 ] ] );

		function send( payload ) {
			busy[ 1 ]( true );
			error[ 1 ]( '' );
			update( { namespace: 'stammkunde', data: payload } )
				.catch( function ( e ) {
					error[ 1 ]( ( e && e.message ) || text.fallback );
				} )
				.then( function () {
					busy[ 1 ]( false );
				} );
		}

		var items = [];
		( data.codes || [] ).forEach( function ( row ) {
			items.push( el( 'li', { key: 'c-' + row.code },
				el( 'span', { className: 'stammkunde-reward' }, row.reward ), ' ',
				el( 'code', null, row.code ), ' ',
				el( 'button', { type: 'button', className: 'stammkunde-apply', disabled: busy[ 0 ], onClick: function () {
					send( { action: 'apply', code: row.code } );
				} }, text.apply )
			) );
		} );
		( data.rewards || [] ).forEach( function ( reward ) {
			items.push( el( 'li', { key: 'r-' + reward.name },
				el( 'span', { className: 'stammkunde-reward' }, reward.name ), ' ',
				el( 'span', { className: 'stammkunde-cost' }, fill( text.cost, reward.points ) ), ' ',
				el( 'button', { type: 'button', className: 'stammkunde-redeem', disabled: busy[ 0 ] || data.pending, onClick: function () {
					keys[ reward.name ] = keys[ reward.name ] || newKey();
					send( { action: 'redeem', reward: reward.name, key: keys[ reward.name ] } );
				} }, text.redeem )
			) );
		} );
		if ( ! data.points && ! items.length && ! data.pending ) {
			return null;
		}
		return el( 'div', { className: 'stammkunde-block' },
			data.points ? el( 'p', { className: 'stammkunde-earn' }, fill( data.estimate ? text.earn_about : text.earn, data.points ) ) : null,
			items.length ? el( 'p', { className: 'stammkunde-title' }, text.title, data.balance !== null ? ' · ' + fill( text.balance, data.balance ) : '' ) : null,
			items.length ? el( 'ul', null, items ) : null,
			data.pending ? el( 'p', { role: 'status' }, text.pending ) : null,
			error[ 0 ] ? el( 'p', { role: 'alert', className: 'stammkunde-error' }, error[ 0 ] ) : null
		);
	}

	wp.plugins.registerPlugin( 'stammkunde', {
		scope: 'woocommerce-checkout',
		render: function () {
			// The slot clones its children with the cart and `extensions` as props.
			return el( Slot, null, el( Rewards, null ) );
		},
	} );
}( window.wp, window.wc, window.stammkundeBlocks || {} ) );
